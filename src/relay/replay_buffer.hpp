// replay_buffer.hpp: the message as sent to the first backend, kept so it
// can be replayed on another.
//
// The first `memory_limit` bytes stay in memory, as long as all buffers
// together stay within `memory_total`; the rest goes to a temporary file
// that is unlinked from the start (O_TMPFILE), so a 50 MB message costs
// bounded memory, ten thousand messages cost at most `memory_total`, and a
// crash leaves nothing behind.
//
// The memory part comes from, and returns to, the thread's buffer cache
// (buffer_cache.hpp).
//
// The spill file is written in pieces of at most kSpillPiece bytes, so one
// write() stays short on the event loop's thread.  A spill that fails
// (temp_directory gone or full) makes the message unreplayable and the
// caller answers 452 4.3.1 (insufficient storage); each failure is counted (RelayCounters,
// smtplb_spill_failures_total) and logged with its errno, at most once a
// minute for the whole process.  probe_directory() is what `smtplb check`
// and start-up use to refuse an unusable temp_directory up front.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace smtplb::relay {

class ReplayBuffer {
 public:
  // `memory_limit`: this message's bytes kept in memory; `memory_total`:
  // all buffers' together (limits.replay_memory_total), shared by every
  // core through one atomic.
  ReplayBuffer(std::uint64_t memory_limit, std::string temp_dir,
               std::uint64_t memory_total = std::uint64_t(-1));
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
  // Bytes held in memory now, with room to grow (for tests).
  std::size_t memory_capacity() const { return memory_.capacity(); }

  static constexpr std::size_t kSpillPiece = 64 * 1024;

  // Whether spill files can be made in `dir` (it exists, is a directory,
  // and an unlinked file can be created and written there): empty when
  // they can, else why not (with the system's reason).
  static std::string probe_directory(const std::string& dir);
  // Spills that failed since start-up, all buffers together.
  // Bytes every buffer holds in memory now, together.
  static std::uint64_t memory_in_use();

 private:
  std::uint64_t memory_limit_;
  std::uint64_t memory_total_;
  std::string temp_dir_;
  std::string memory_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
  bool failed_ = false;

  void spill_failed(const char* what, int err);
};

}  // namespace smtplb::relay
