// replay_buffer.hpp: the message as sent to the first backend, kept so it
// can be replayed on another.
//
// The first `memory_limit` bytes stay in memory; the rest goes to a
// temporary file that is unlinked from the start (O_TMPFILE), so a 50 MB
// message costs bounded memory and a crash leaves nothing behind.
//
// The memory part is recycled through a small per-thread cache: without
// it every message grew a fresh string by doubling (a copy per doubling)
// into pages the kernel had to fault in, which was most of the copying
// cost of a 100 KB message.  Per thread, so no lock on the data path.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace smtplb::client {

class ReplayBuffer {
 public:
  ReplayBuffer(std::uint64_t memory_limit, std::string temp_dir);
  ~ReplayBuffer();
  ReplayBuffer(const ReplayBuffer&) = delete;
  ReplayBuffer& operator=(const ReplayBuffer&) = delete;

  // False when the spill file could not be written (disk full): the
  // message then cannot be replayed, and the caller refuses it with 451.
  bool append(std::string_view bytes);
  std::uint64_t size() const { return size_; }
  bool spilled() const { return fd_ >= 0; }
  // Reads up to `max` bytes at `offset` into `out` (replacing it).
  bool read(std::uint64_t offset, std::size_t max, std::string& out) const;
  void clear();

  // What this thread's cache keeps for the next message, at most.
  static constexpr std::size_t kCachedBuffers = 8;
  static constexpr std::size_t kCachedBytes = 4 << 20;

 private:
  std::uint64_t memory_limit_;
  std::string temp_dir_;
  std::string memory_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
  bool failed_ = false;
};

}  // namespace smtplb::client
