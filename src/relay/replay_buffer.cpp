#include "relay/replay_buffer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "relay/buffer_cache.hpp"

namespace smtplb::relay {

namespace {

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
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace

ReplayBuffer::ReplayBuffer(std::uint64_t memory_limit, std::string temp_dir)
    : memory_limit_(memory_limit), temp_dir_(std::move(temp_dir)) {}

ReplayBuffer::~ReplayBuffer() {
  clear();
}

bool ReplayBuffer::append(std::string_view bytes) {
  if (failed_) return false;
  if (memory_.empty() && !bytes.empty()) {
    std::string cached = take_buffer();
    if (cached.capacity() > memory_.capacity()) memory_.swap(cached);
  }
  if (memory_.size() < memory_limit_) {
    std::size_t room = static_cast<std::size_t>(memory_limit_ - memory_.size());
    std::size_t n = std::min(room, bytes.size());
    memory_.append(bytes.substr(0, n));
    bytes.remove_prefix(n);
    size_ += n;
  }
  if (bytes.empty()) return true;
  if (fd_ < 0) fd_ = open_unlinked(temp_dir_);
  // The write goes to the page cache; the data path accepts that short
  // block rather than a thread hop per chunk.
  if (fd_ < 0 || !write_all(fd_, bytes)) {
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
  give_buffer(std::move(memory_));
  memory_ = std::string();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  size_ = 0;
  failed_ = false;
}

}  // namespace smtplb::relay
