#include "dns/cache.hpp"

#include <algorithm>
#include <cctype>
#include <utility>

namespace smtplb::dns {
namespace {

// "mx:" or "addr:" and the name as the DNS compares it: lowercase, no
// trailing dot (RFC 4343).
std::string key_of(std::string_view kind, std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  std::string key(kind);
  key.reserve(kind.size() + name.size());
  for (char c : name) key += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return key;
}

Status status_of(const std::variant<MxResult, AddrResult>& v) {
  return std::visit([](const auto& r) { return r.status; }, v);
}
Ttl ttl_of(const std::variant<MxResult, AddrResult>& v) {
  return std::visit([](const auto& r) { return r.ttl; }, v);
}

template <class T>
std::optional<Cached<T>> found(const std::variant<MxResult, AddrResult>* v, Freshness f) {
  if (!v) return std::nullopt;
  return Cached<T>{std::get<T>(*v), f};
}

}  // namespace

Cache::Clock::duration Cache::keep_for(const Value& v) const {
  Status s = status_of(v);
  Ttl ttl = ttl_of(v);
  if (s == Status::kOk) {
    return std::clamp(ttl.value_or(policy_.min_ttl), policy_.min_ttl, policy_.max_ttl);
  }
  if (s == Status::kNxDomain || s == Status::kNoData || s == Status::kBadName) {
    return std::clamp(ttl.value_or(policy_.negative_ttl), policy_.min_ttl,
                      std::max(policy_.min_ttl, policy_.max_negative_ttl));
  }
  return policy_.failure_ttl;
}

const Cache::Value* Cache::find(std::string key, Clock::time_point now, Freshness& freshness) {
  auto it = index_.find(key);
  if (it == index_.end()) {
    ++counters_.misses;
    return nullptr;
  }
  List::iterator e = it->second;
  if (now < e->expires) {
    touch(e);
    ++counters_.hits;
    freshness = Freshness::kFresh;
    return &e->value;
  }
  if (e->retry_after && now < *e->retry_after && now < e->stale_until) {
    touch(e);
    ++counters_.stale_hits;
    freshness = Freshness::kStale;
    return &e->value;
  }
  if (now >= e->stale_until) {
    lru_.erase(e);
    index_.erase(it);
  }
  ++counters_.misses;
  return nullptr;
}

std::pair<const Cache::Value*, Freshness> Cache::put(std::string key, Value value,
                                                     Clock::time_point now) {
  Status s = status_of(value);
  if (!is_final(s)) {
    if (auto kept = stand_in(key, now)) return *kept;
  }
  auto it = index_.find(key);
  Clock::duration keep = keep_for(value);
  Entry fresh{key, std::move(value), now + keep, now + keep, std::nullopt};
  if (s == Status::kOk) fresh.stale_until += policy_.stale_for;
  if (it != index_.end()) {
    *it->second = std::move(fresh);
    touch(it->second);
    return {&lru_.front().value, Freshness::kFresh};
  }
  lru_.push_front(std::move(fresh));
  index_.emplace(std::move(key), lru_.begin());
  while (index_.size() > policy_.max_entries && lru_.size() > 1) {
    index_.erase(lru_.back().key);
    lru_.pop_back();
    ++counters_.evictions;
  }
  return {&lru_.front().value, Freshness::kFresh};
}

std::optional<Cached<MxResult>> Cache::find_mx(std::string_view domain, Clock::time_point now) {
  Freshness f = Freshness::kFresh;
  const Value* v = find(key_of("mx:", domain), now, f);
  return found<MxResult>(v, f);
}

std::optional<Cached<AddrResult>> Cache::find_addresses(std::string_view host,
                                                        Clock::time_point now) {
  Freshness f = Freshness::kFresh;
  const Value* v = find(key_of("addr:", host), now, f);
  return found<AddrResult>(v, f);
}

std::optional<std::pair<const Cache::Value*, Freshness>> Cache::stand_in(const std::string& key,
                                                                         Clock::time_point now) {
  auto it = index_.find(key);
  if (it == index_.end()) return std::nullopt;
  List::iterator e = it->second;
  if (status_of(e->value) != Status::kOk || now >= e->stale_until) return std::nullopt;
  // The failure would likely repeat: keep the records, and do not ask
  // again before failure_ttl.
  e->retry_after = now + policy_.failure_ttl;
  touch(e);
  if (now < e->expires) {
    ++counters_.hits;
    return std::pair{&e->value, Freshness::kFresh};
  }
  ++counters_.stale_hits;
  return std::pair{&e->value, Freshness::kStale};
}

template <class T>
Cached<T> Cache::store(std::string key, T answer, Clock::time_point now) {
  // A cancelled lookup learnt nothing: handed back, never stored.
  if (answer.status == Status::kCancelled) return {std::move(answer), Freshness::kFresh};
  if (answer.status == Status::kBusy) {
    // Never asked (dns.max_in_flight): the last good answer stands in, as
    // for a failed refresh; without one the caller defers.  Nothing is
    // stored: a busy moment must not refuse a name for failure_ttl.
    if (auto kept = stand_in(key, now)) return {std::get<T>(*kept->first), kept->second};
    return {std::move(answer), Freshness::kFresh};
  }
  auto [v, f] = put(std::move(key), std::move(answer), now);
  return {std::get<T>(*v), f};
}

Cached<MxResult> Cache::put_mx(std::string_view domain, MxResult answer, Clock::time_point now) {
  return store(key_of("mx:", domain), std::move(answer), now);
}

Cached<AddrResult> Cache::put_addresses(std::string_view host, AddrResult answer,
                                        Clock::time_point now) {
  return store(key_of("addr:", host), std::move(answer), now);
}

void Cache::clear() {
  lru_.clear();
  index_.clear();
}

}  // namespace smtplb::dns
