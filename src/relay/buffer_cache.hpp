// buffer_cache.hpp: emptied message buffers kept per thread for reuse.
//
// A 100 KB message used to cost a fresh string for its replay copy and
// another for its wire form, each grown by doubling (a copy per doubling)
// into heap pages the kernel had to fault in again, because glibc gives
// the top of the heap back once it is freed: perf put a quarter of
// smtplb's CPU on such a message in memmove and page faults.  Buffers come
// from, and go back to, a small cache of the thread's own, bounded in
// number and bytes; per thread, so no lock on the data path.
#pragma once

#include <cstddef>
#include <string>

namespace smtplb::relay {

// At most this much is kept per thread.
inline constexpr std::size_t kCachedBuffers = 8;
inline constexpr std::size_t kCachedBufferBytes = 4 << 20;

// An empty string, with the capacity of an earlier one when there is one.
std::string take_buffer();
// Keeps `s`'s memory for the next take_buffer() (or frees it).
void give_buffer(std::string&& s);

// A string from the cache for the holder's lifetime.
class CachedBuffer {
 public:
  CachedBuffer() : s_(take_buffer()) {}
  ~CachedBuffer() { give_buffer(std::move(s_)); }
  CachedBuffer(const CachedBuffer&) = delete;
  CachedBuffer& operator=(const CachedBuffer&) = delete;
  std::string& operator*() { return s_; }
  std::string* operator->() { return &s_; }

 private:
  std::string s_;
};

}  // namespace smtplb::relay
