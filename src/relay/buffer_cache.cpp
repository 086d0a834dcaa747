#include "relay/buffer_cache.hpp"

#include <utility>
#include <vector>

namespace smtplb::relay {

namespace {

class BufferCache {
 public:
  std::string take() {
    if (free_.empty()) return {};
    std::string s = std::move(free_.back());
    free_.pop_back();
    bytes_ -= s.capacity();
    return s;
  }
  void give(std::string&& s) {
    // A string that never left its inline storage has nothing to keep.
    if (s.capacity() <= std::string().capacity()) return;
    if (free_.size() >= kCachedBuffers || bytes_ + s.capacity() > kCachedBufferBytes) return;
    s.clear();
    bytes_ += s.capacity();
    free_.push_back(std::move(s));
  }

 private:
  std::vector<std::string> free_;
  std::size_t bytes_ = 0;
};

BufferCache& cache() {
  thread_local BufferCache c;
  return c;
}

}  // namespace

std::string take_buffer() {
  return cache().take();
}

void give_buffer(std::string&& s) {
  cache().give(std::move(s));
}

}  // namespace smtplb::relay
