#include "relay/replay_buffer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "log/log.hpp"
#include "relay/buffer_cache.hpp"
#include "relay/relay_counters.hpp"

namespace smtplb::relay {

RelayCounters& counters() {
  static RelayCounters c;
  return c;
}

namespace {

// Bytes all buffers hold in memory (limits.replay_memory_total).
std::atomic<std::uint64_t> g_in_memory{0};

// Takes up to `want` bytes of the shared budget; what it could get.
std::uint64_t reserve_memory(std::uint64_t want, std::uint64_t total) {
  std::uint64_t cur = g_in_memory.load(std::memory_order_relaxed);
  for (;;) {
    const std::uint64_t n = std::min(want, total > cur ? total - cur : 0);
    if (n == 0) return 0;
    if (g_in_memory.compare_exchange_weak(cur, cur + n, std::memory_order_relaxed)) return n;
  }
}
// steady_clock ticks of the last spill_failure log line; a minute apart.
std::atomic<std::int64_t> g_last_spill_log{std::numeric_limits<std::int64_t>::min()};
constexpr std::chrono::minutes kSpillLogInterval{1};

int open_unlinked(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) return fd;
  // File systems without O_TMPFILE: create, then unlink at once.
  std::string tmpl = dir + "/smtplb-replay-XXXXXX";
  fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
  if (fd >= 0) ::unlink(tmpl.c_str());
  return fd;
}

bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    // Bounded pieces: a short write() each, not one the size of a chunk.
    ssize_t n = ::write(fd, bytes.data(), std::min(bytes.size(), ReplayBuffer::kSpillPiece));
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace

std::string ReplayBuffer::probe_directory(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return std::strerror(errno);
  if (!S_ISDIR(st.st_mode)) return "not a directory";
  int fd = open_unlinked(dir);
  if (fd < 0) return std::string("cannot create a temporary file there: ") + std::strerror(errno);
  bool ok = write_all(fd, "smtplb");
  int err = errno;
  ::close(fd);
  if (!ok) return std::string("cannot write a temporary file there: ") + std::strerror(err);
  return {};
}

std::uint64_t ReplayBuffer::memory_in_use() {
  return g_in_memory.load(std::memory_order_relaxed);
}

void ReplayBuffer::spill_failed(const char* what, int err) {
  const std::uint64_t failures =
      counters().spill_failures.fetch_add(1, std::memory_order_relaxed) + 1;
  // One line a minute at most, process-wide: a full disk fails every
  // large message, and the log must not become the next thing to fill it.
  const std::int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
  const std::int64_t interval =
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(kSpillLogInterval).count();
  std::int64_t last = g_last_spill_log.load(std::memory_order_relaxed);
  if (last != std::numeric_limits<std::int64_t>::min() && now - last < interval) return;
  if (!g_last_spill_log.compare_exchange_strong(last, now, std::memory_order_relaxed)) return;
  log::Record("spill_failure")
      .add("temp_directory", temp_dir_)
      .add("error", what)
      .add("errno", err)
      .add("reason", std::strerror(err))
      .add("effect", "messages over limits.replay_memory get 452 4.3.1")
      .add("failures_total", static_cast<long long>(failures))
      .emit(spdlog::level::err);
}

ReplayBuffer::ReplayBuffer(std::uint64_t memory_limit, std::string temp_dir,
                           std::uint64_t memory_total)
    : memory_limit_(memory_limit), memory_total_(memory_total), temp_dir_(std::move(temp_dir)) {}

ReplayBuffer::~ReplayBuffer() {
  clear();
}

bool ReplayBuffer::append(std::string_view bytes) {
  if (failed_) return false;
  if (memory_.empty() && !bytes.empty()) {
    std::string cached = take_buffer();
    if (cached.capacity() > memory_.capacity()) memory_.swap(cached);
  }
  // Memory only while nothing went to the file yet (the bytes stay in
  // order), within this message's limit and the shared total.
  if (fd_ < 0 && memory_.size() < memory_limit_) {
    const std::uint64_t room = memory_limit_ - memory_.size();
    const std::size_t n = static_cast<std::size_t>(
        reserve_memory(std::min<std::uint64_t>(room, bytes.size()), memory_total_));
    memory_.append(bytes.substr(0, n));
    bytes.remove_prefix(n);
    size_ += n;
  }
  if (bytes.empty()) return true;
  if (fd_ < 0) {
    fd_ = open_unlinked(temp_dir_);
    if (fd_ < 0) {
      spill_failed("cannot create a spill file", errno);
      failed_ = true;
      return false;
    }
  }
  // The write goes to the page cache, in bounded pieces; the data path
  // accepts that short block rather than a thread hop per chunk.
  if (!write_all(fd_, bytes)) {
    spill_failed("cannot write the spill file", errno);
    failed_ = true;
    return false;
  }
  size_ += bytes.size();
  return true;
}

bool ReplayBuffer::read(std::uint64_t offset, std::size_t max, std::string& out) const {
  out.clear();
  if (offset >= size_) return true;
  if (offset < memory_.size()) {
    std::size_t n = std::min<std::size_t>(max, memory_.size() - offset);
    out.assign(memory_, offset, n);
    return true;
  }
  std::uint64_t file_off = offset - memory_.size();
  std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(max, size_ - offset));
  out.resize(n);
  std::size_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd_, out.data() + got, n - got, static_cast<off_t>(file_off + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    got += static_cast<std::size_t>(r);
  }
  return true;
}

void ReplayBuffer::clear() {
  g_in_memory.fetch_sub(memory_.size(), std::memory_order_relaxed);
  give_buffer(std::move(memory_));
  memory_ = std::string();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  size_ = 0;
  failed_ = false;
}

}  // namespace smtplb::relay
