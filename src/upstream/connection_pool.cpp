#include "upstream/connection_pool.hpp"

namespace smtplb::upstream {

bool ConnectionPool::fresh(const BackendSession& s, Clock::time_point now) const {
  return s.is_open() && !s.has_unsolicited_input() && now - s.last_used() < cfg_.idle_timeout &&
         now - s.created() < cfg_.max_age;
}

std::unique_ptr<BackendSession> ConnectionPool::take(Clock::time_point now) {
  // Most recently used first: the likeliest to be alive.
  while (!idle_.empty()) {
    auto s = std::move(idle_.back());
    idle_.pop_back();
    if (fresh(*s, now)) {
      s->reused = true;
      return s;
    }
    s->close();  // past its limits: not worth a QUIT round trip on this path
  }
  return nullptr;
}

void ConnectionPool::give_back(std::unique_ptr<BackendSession> s) {
  // Unsolicited input (a 421 while idle) is looked for when the session
  // is taken again (fresh()), not here: one ioctl per reuse, not two.
  if (!s || !s->is_open() || static_cast<int>(idle_.size()) >= cfg_.max_idle) {
    if (s) s->close();
    return;
  }
  s->touch();
  idle_.push_back(std::move(s));
}

std::vector<std::unique_ptr<BackendSession>> ConnectionPool::expired(Clock::time_point now) {
  std::vector<std::unique_ptr<BackendSession>> out;
  std::deque<std::unique_ptr<BackendSession>> keep;
  for (auto& s : idle_) {
    if (fresh(*s, now))
      keep.push_back(std::move(s));
    else
      out.push_back(std::move(s));
  }
  idle_ = std::move(keep);
  return out;
}

std::vector<std::unique_ptr<BackendSession>> ConnectionPool::drain_all() {
  std::vector<std::unique_ptr<BackendSession>> out;
  for (auto& s : idle_) out.push_back(std::move(s));
  idle_.clear();
  return out;
}

}  // namespace smtplb::upstream
