#include "dns/resolver.hpp"

#include <ares.h>
#include <arpa/inet.h>

#include <algorithm>
#include <list>
#include <optional>
#include <span>
#include <unordered_map>
#include <utility>

#include "dns/answer_parser.hpp"
#include "net/clock.hpp"

namespace smtplb::dns {
namespace {

// RFC 1035 §3.2.2 and RFC 3596 §2.1.
constexpr int kClassIn = 1;
constexpr int kTypeA = 1;
constexpr int kTypeMx = 15;
constexpr int kTypeAaaa = 28;
// Addresses kept per family and lookup; an answer with more is a
// misconfiguration, and more candidates would not help a transaction.
constexpr int kMaxAddresses = 32;

// Not a c-ares status: the lookup was never sent (max_in_flight).
constexpr int kNotSentBusy = -1000;

// What c-ares handed to the callback: its status and a copy of the answer
// (the buffer is c-ares's and is freed when the callback returns).
struct RawReply {
  int status = ARES_ECANCELLED;
  std::vector<unsigned char> answer;
};

Status status_of(int ares_status) {
  switch (ares_status) {
    case ARES_SUCCESS:
      return Status::kOk;
    case ARES_ENODATA:
      return Status::kNoData;
    case ARES_ENOTFOUND:
      return Status::kNxDomain;
    case ARES_ESERVFAIL:
      return Status::kServFail;
    case ARES_ETIMEOUT:
      return Status::kTimeout;
    case ARES_EREFUSED:
    case ARES_ECONNREFUSED:
      return Status::kRefused;
    case ARES_EFORMERR:
    case ARES_EBADRESP:
      return Status::kMalformed;
    case ARES_EBADNAME:
      return Status::kBadName;
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
      return Status::kCancelled;
    case kNotSentBusy:
      return Status::kBusy;
    default:
      return Status::kOther;
  }
}

MxResult mx_result(const RawReply& r) {
  // c-ares passes the answer with NOERROR (ARES_SUCCESS, ARES_ENODATA) and
  // NXDOMAIN (ARES_ENOTFOUND); the parser reads the RCODE itself.
  if (!r.answer.empty()) return parse_mx_answer(r.answer);
  return MxResult{status_of(r.status), {}, {}};
}

AddrResult addr_result(const RawReply& r, int type) {
  AddrResult out;
  if (r.answer.empty()) {
    out.status = status_of(r.status);
    return out;
  }
  if (r.status != ARES_SUCCESS) {
    out.status = status_of(r.status);
    if (out.status == Status::kNxDomain || out.status == Status::kNoData)
      out.ttl = parse_negative_ttl(r.answer);
    return out;
  }
  const int len = static_cast<int>(r.answer.size());
  int n = kMaxAddresses;
  int rc;
  std::chrono::seconds ttl = std::chrono::seconds::max();
  if (type == kTypeA) {
    ares_addrttl found[kMaxAddresses];
    rc = ares_parse_a_reply(r.answer.data(), len, nullptr, found, &n);
    for (int i = 0; rc == ARES_SUCCESS && i < n; ++i) {
      out.addresses.emplace_back(boost::asio::ip::address_v4(ntohl(found[i].ipaddr.s_addr)));
      ttl = std::min(ttl, std::chrono::seconds(std::max(found[i].ttl, 0)));
    }
  } else {
    ares_addr6ttl found[kMaxAddresses];
    rc = ares_parse_aaaa_reply(r.answer.data(), len, nullptr, found, &n);
    for (int i = 0; rc == ARES_SUCCESS && i < n; ++i) {
      boost::asio::ip::address_v6::bytes_type bytes;
      std::copy_n(found[i].ip6addr._S6_un._S6_u8, bytes.size(), bytes.begin());
      out.addresses.emplace_back(boost::asio::ip::address_v6(bytes));
      ttl = std::min(ttl, std::chrono::seconds(std::max(found[i].ttl, 0)));
    }
  }
  if (rc == ARES_SUCCESS && !out.addresses.empty()) {
    out.status = Status::kOk;
    out.ttl = ttl;
  } else if (rc == ARES_SUCCESS || rc == ARES_ENODATA) {
    // Only CNAMEs, or records of another type: the name has no address.
    out.status = Status::kNoData;
    out.ttl = parse_negative_ttl(r.answer);
  } else {
    out.status = rc == ARES_ENOMEM ? Status::kOther : Status::kMalformed;
  }
  return out;
}

}  // namespace

class Resolver::Core : public std::enable_shared_from_this<Core> {
 public:
  Core(asio::any_io_executor ex, Clock::duration bound, std::size_t max_in_flight,
       ResolverTotals* totals)
      : ex_(ex),
        timer_(ex),
        bound_(bound),
        max_in_flight_(max_in_flight),
        totals_(totals ? totals : &own_totals_) {}

  // c-ares ends every query here (ARES_EDESTRUCTION, so each waiting
  // coroutine gets kCancelled, posted) and announces the closing of each
  // socket (so every watch is released) while the members are still alive.
  // Queued lookups, never sent, end the same way.
  ~Core() {
    destroying_ = true;
    if (channel_) ares_destroy(channel_);
    while (!queued_.empty()) complete(*queued_.front(), RawReply{ARES_EDESTRUCTION, {}});
  }

  std::string init(const ResolverOptions& o);

  // Asks c-ares one question; completes with void(RawReply) on the
  // handler's executor, always posted, never inside this call.
  template <class Token>
  static auto async_query(std::weak_ptr<Core> core, std::string name, int type, Token&& token) {
    return asio::async_initiate<Token, void(RawReply)>(
        [](auto handler, std::weak_ptr<Core> core, std::string name, int type) {
          if (auto c = core.lock()) {
            c->start(std::move(handler), name, type);
          } else {
            // The resolver was destroyed before the query could start.
            auto ex = asio::get_associated_executor(handler);
            asio::post(ex, [h = std::move(handler)]() mutable { std::move(h)(RawReply{}); });
          }
        },
        token, std::move(core), std::move(name), type);
  }

  const ResolverTotals& totals() const { return *totals_; }

 private:
  // One socket c-ares asked us to watch.  Shared with the waits in flight,
  // which may complete after c-ares closed the socket (and even after it
  // opened another one with the same number): `closed` tells them.
  struct Watch {
    explicit Watch(asio::any_io_executor ex, ares_socket_t s) : desc(ex), fd(s) {}
    asio::posix::stream_descriptor desc;
    ares_socket_t fd;
    bool want_read = false, want_write = false;
    bool reading = false, writing = false;  // a wait is in flight
    bool closed = false;
  };

  // One query, from ares_query to the handler's completion.  Owned by
  // c-ares's callback argument until c-ares calls back (it always does:
  // answer, failure or ares_destroy) and by `waiting_` while the handler
  // waits; the cancellation slot holds only a weak_ptr.
  struct Query {
    // c-ares calls back only from inside a live Core (ares_process_fd,
    // ares_query, ares_destroy); elsewhere used only while `handler` is set.
    Core* core = nullptr;
    asio::any_completion_handler<void(RawReply)> handler;  // empty once completed
    // The handler's executor, where the completion is posted; tracked, so
    // its io_context keeps running while the query is out.
    asio::any_io_executor work;
    Clock::time_point deadline;
    std::list<std::shared_ptr<Query>>::iterator pos;  // in waiting_ while handler is set
    // Until sent (max_in_flight): what to ask, and the place in queued_.
    std::string name;
    int type = 0;
    std::optional<std::list<std::shared_ptr<Query>>::iterator> queued_pos;
  };

  template <class Handler>
  void start(Handler handler, const std::string& name, int type);
  void send(const std::shared_ptr<Query>& q, const std::string& name, int type);
  // Sends queued lookups while there is room under max_in_flight.
  void send_queued();
  // Ends a lookup whose bound is up.
  void expire(Query& q);
  void complete(Query& q, RawReply reply);

  static void on_answer(void* arg, int status, int timeouts, unsigned char* abuf, int alen);
  static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable);
  void watch(ares_socket_t fd, bool readable, bool writable);
  void arm_read(const std::shared_ptr<Watch>& w);
  void arm_write(const std::shared_ptr<Watch>& w);
  // Lets c-ares read, write or time out, then ends lookups past their
  // bound and sets the timer for whatever comes next.
  void process(ares_socket_t read_fd, ares_socket_t write_fd);
  void rearm_timer();

  asio::any_io_executor ex_;
  Timer timer_;
  bool timer_armed_ = false;
  Clock::time_point timer_at_;
  Clock::duration bound_;  // timeout x attempts, the most any lookup waits
  ares_channel channel_ = nullptr;
  std::unordered_map<ares_socket_t, std::shared_ptr<Watch>> watches_;
  // Every lookup has the same bound, so the order of starting is the order
  // of deadlines: the front is always the next to expire.
  std::list<std::shared_ptr<Query>> waiting_;
  // Queries c-ares holds (from ares_query until its callback, which may
  // come after the lookup ended), their bound, and the lookups waiting for
  // one to end, oldest first; at most max_in_flight_ of them too.
  std::size_t in_flight_ = 0;
  std::size_t max_in_flight_;
  std::list<std::shared_ptr<Query>> queued_;
  bool destroying_ = false;  // no query is sent from ares_destroy's callbacks
  bool sending_queued_ = false;
  ResolverTotals own_totals_;  // counted here unless ResolverOptions::totals is set
  ResolverTotals* totals_;
};

namespace {
void count(std::atomic<std::uint64_t>& n) {
  n.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

std::string Resolver::Core::init(const ResolverOptions& o) {
  ares_options opts{};
  opts.timeout = static_cast<int>(o.timeout.count());  // milliseconds with ARES_OPT_TIMEOUTMS
  opts.tries = o.attempts;
  opts.sock_state_cb = &Core::on_sock_state;
  opts.sock_state_cb_data = this;
  int rc = ares_init_options(&channel_, &opts,
                             ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB);
  if (rc != ARES_SUCCESS) {
    channel_ = nullptr;
    return std::string("c-ares: ") + ares_strerror(rc);
  }
  if (o.servers.empty()) return {};

  std::vector<ares_addr_port_node> nodes(o.servers.size());
  for (std::size_t i = 0; i < o.servers.size(); ++i) {
    const config::Endpoint& e = o.servers[i];
    ares_addr_port_node& n = nodes[i];
    n.next = i + 1 < nodes.size() ? &nodes[i + 1] : nullptr;
    n.udp_port = n.tcp_port = e.port;
    if (inet_pton(AF_INET, e.host.c_str(), &n.addr.addr4) == 1) {
      n.family = AF_INET;
    } else if (inet_pton(AF_INET6, e.host.c_str(), &n.addr.addr6) == 1) {
      n.family = AF_INET6;
    } else {
      return "dns server " + e.str() + " is not an IP address";
    }
  }
  rc = ares_set_servers_ports(channel_, nodes.data());
  if (rc != ARES_SUCCESS) return std::string("c-ares servers: ") + ares_strerror(rc);
  return {};
}

template <class Handler>
void Resolver::Core::start(Handler handler, const std::string& name, int type) {
  auto q = std::make_shared<Query>();
  q->core = this;
  auto slot = asio::get_associated_cancellation_slot(handler);
  q->work = asio::prefer(asio::get_associated_executor(handler, ex_),
                         asio::execution::outstanding_work.tracked);
  // Constructed, then swapped in: Boost 1.81's any_completion_handler
  // move-assignment copies instead of moving and recurses without end.
  asio::any_completion_handler<void(RawReply)> erased(std::move(handler));
  q->handler.swap(erased);
  q->deadline = Clock::now() + bound_;
  q->pos = waiting_.insert(waiting_.end(), q);
  if (slot.is_connected()) {
    // The slot may outlive the query (it belongs to the coroutine), so it
    // holds a weak reference and does nothing once the query has ended.
    slot.assign([weak = std::weak_ptr<Query>(q)](asio::cancellation_type) {
      auto q = weak.lock();
      if (!q || !q->handler) return;
      count(q->core->totals_->cancelled);
      q->core->complete(*q, RawReply{ARES_ECANCELLED, {}});
    });
  }
  if (in_flight_ < max_in_flight_) {
    send(q, name, type);
  } else if (queued_.size() < max_in_flight_) {
    count(totals_->queued);
    q->name = name;
    q->type = type;
    q->queued_pos = queued_.insert(queued_.end(), q);
  } else {
    count(totals_->busy);
    complete(*q, RawReply{kNotSentBusy, {}});
  }
  rearm_timer();
}

void Resolver::Core::send(const std::shared_ptr<Query>& q, const std::string& name, int type) {
  count(totals_->queries);
  ++in_flight_;
  // May call on_answer before returning (a name c-ares cannot encode):
  // complete() posts, so nothing resumes in here.
  ares_query(channel_, name.c_str(), kClassIn, type, &Core::on_answer,
             new std::shared_ptr<Query>(q));
}

void Resolver::Core::send_queued() {
  // ares_query may call back at once (on_answer, which calls this again):
  // the outer loop goes on instead, so the stack stays flat.
  if (sending_queued_) return;
  sending_queued_ = true;
  const Clock::time_point now = Clock::now();
  while (!destroying_ && in_flight_ < max_in_flight_ && !queued_.empty()) {
    std::shared_ptr<Query> q = queued_.front();
    if (q->deadline <= now) {  // its bound is up: sending it would only take a place
      expire(*q);
      continue;
    }
    queued_.pop_front();
    q->queued_pos.reset();
    send(q, std::exchange(q->name, {}), q->type);
  }
  sending_queued_ = false;
}

void Resolver::Core::expire(Query& q) {
  // A lookup still queued was never sent: busy, not a DNS timeout (and so
  // not cached as one).
  if (q.queued_pos) {
    count(totals_->busy);
    complete(q, RawReply{kNotSentBusy, {}});
  } else {
    count(totals_->timeouts);
    complete(q, RawReply{ARES_ETIMEOUT, {}});
  }
}

void Resolver::Core::complete(Query& q, RawReply reply) {
  asio::any_completion_handler<void(RawReply)> handler(std::move(q.handler));  // leaves it empty
  // Onto the handler's own executor (kept, as outstanding work, since the
  // query started): the coroutine resumes there, in its own turn.
  asio::any_io_executor ex = std::move(q.work);
  // Out of the lists last: they may hold the only references to `q`.
  auto queued = std::exchange(q.queued_pos, std::nullopt);  // not sent yet
  waiting_.erase(q.pos);
  if (queued) queued_.erase(*queued);
  asio::post(
      ex, [h = std::move(handler), r = std::move(reply)]() mutable { std::move(h)(std::move(r)); });
}

void Resolver::Core::on_answer(void* arg, int status, int /*timeouts*/, unsigned char* abuf,
                               int alen) {
  std::unique_ptr<std::shared_ptr<Query>> holder(static_cast<std::shared_ptr<Query>*>(arg));
  Query& q = **holder;
  Core& core = *q.core;
  --core.in_flight_;
  if (q.handler) {  // else ended by its bound or cancelled: the answer is dropped
    RawReply reply{status, {}};
    if (abuf && alen > 0) reply.answer.assign(abuf, abuf + alen);
    core.complete(q, std::move(reply));
  }
  core.send_queued();
}

void Resolver::Core::on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
  static_cast<Core*>(data)->watch(fd, readable != 0, writable != 0);
}

void Resolver::Core::watch(ares_socket_t fd, bool readable, bool writable) {
  auto it = watches_.find(fd);
  if (!readable && !writable) {
    // c-ares is about to close the socket: stop watching it, without
    // closing it ourselves (release, not close), and before the number can
    // be reused.  The waits in flight complete with operation_aborted.
    if (it == watches_.end()) return;
    std::shared_ptr<Watch> w = std::move(it->second);
    watches_.erase(it);
    w->closed = true;
    w->desc.release();
    return;
  }
  if (it == watches_.end()) {
    auto w = std::make_shared<Watch>(ex_, fd);
    error_code ec;
    w->desc.assign(fd, ec);
    // Not watchable (the reactor is out of memory): the query still ends
    // by c-ares's timeout and our bound, through the timer.
    if (ec) return;
    it = watches_.emplace(fd, std::move(w)).first;
  }
  std::shared_ptr<Watch> w = it->second;
  w->want_read = readable;
  w->want_write = writable;
  arm_read(w);
  arm_write(w);
}

void Resolver::Core::arm_read(const std::shared_ptr<Watch>& w) {
  if (w->closed || !w->want_read || w->reading) return;
  w->reading = true;
  w->desc.async_wait(asio::posix::descriptor_base::wait_read,
                     [weak = weak_from_this(), w](error_code ec) {
                       w->reading = false;
                       if (ec || w->closed || !w->want_read) return;
                       auto core = weak.lock();
                       if (!core) return;
                       core->process(w->fd, ARES_SOCKET_BAD);
                       core->arm_read(w);
                     });
}

void Resolver::Core::arm_write(const std::shared_ptr<Watch>& w) {
  if (w->closed || !w->want_write || w->writing) return;
  w->writing = true;
  w->desc.async_wait(asio::posix::descriptor_base::wait_write,
                     [weak = weak_from_this(), w](error_code ec) {
                       w->writing = false;
                       if (ec || w->closed || !w->want_write) return;
                       auto core = weak.lock();
                       if (!core) return;
                       core->process(ARES_SOCKET_BAD, w->fd);
                       core->arm_write(w);
                     });
}

void Resolver::Core::process(ares_socket_t read_fd, ares_socket_t write_fd) {
  ares_process_fd(channel_, read_fd, write_fd);
  Clock::time_point now = Clock::now();
  while (!waiting_.empty() && waiting_.front()->deadline <= now) {
    std::shared_ptr<Query> q = waiting_.front();
    expire(*q);
  }
  rearm_timer();
}

void Resolver::Core::rearm_timer() {
  Clock::time_point now = Clock::now();
  std::optional<Clock::time_point> next;
  timeval tv{};
  if (const timeval* t = ares_timeout(channel_, nullptr, &tv)) {
    // Rounded up: firing a little early would only cost a wasted wake-up.
    next = now + std::chrono::seconds(t->tv_sec) + std::chrono::microseconds(t->tv_usec + 1);
  }
  if (!waiting_.empty())
    next = next ? std::min(*next, waiting_.front()->deadline) : waiting_.front()->deadline;
  if (!next) {
    if (timer_armed_) timer_.cancel();
    timer_armed_ = false;
    return;
  }
  // A timer set to fire earlier still serves: it wakes, finds nothing due
  // and is set again.
  if (timer_armed_ && timer_at_ <= *next) return;
  timer_armed_ = true;
  timer_at_ = *next;
  timer_.expires_at(*next);
  timer_.async_wait([weak = weak_from_this()](error_code ec) {
    if (ec) return;  // re-armed or destroyed
    auto core = weak.lock();
    if (!core) return;
    core->timer_armed_ = false;
    core->process(ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  });
}

Resolver::Made Resolver::make(asio::any_io_executor ex, const ResolverOptions& options) {
  // Once per process, before any channel (c-ares asks for this; on Linux
  // it is cheap).  Thread-safe through the static's initialisation.
  static const int library = ares_library_init(ARES_LIB_INIT_ALL);
  if (library != ARES_SUCCESS) return {nullptr, std::string("c-ares: ") + ares_strerror(library)};
  if (options.timeout.count() < 1) return {nullptr, "dns timeout must be at least 1ms"};
  if (options.attempts < 1) return {nullptr, "dns attempts must be at least 1"};

  if (options.max_in_flight < 1) return {nullptr, "dns max_in_flight must be at least 1"};

  auto core =
      std::make_shared<Core>(ex, options.timeout * options.attempts,
                             static_cast<std::size_t>(options.max_in_flight), options.totals);
  std::string error = core->init(options);
  if (!error.empty()) return {nullptr, std::move(error)};
  return {std::unique_ptr<Resolver>(new Resolver(std::move(core))), {}};
}

Resolver::~Resolver() = default;

Resolver::Counters Resolver::counters() const {
  const ResolverTotals& t = core_->totals();
  auto n = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  return {n(t.queries), n(t.timeouts), n(t.cancelled), n(t.queued), n(t.busy)};
}

// After the first co_await these coroutines use nothing of `this`: the
// resolver may be gone when they resume.
awaitable<MxResult> Resolver::resolve_mx(std::string domain) {
  std::weak_ptr<Core> core = core_;
  RawReply r =
      co_await Core::async_query(std::move(core), std::move(domain), kTypeMx, asio::use_awaitable);
  co_return mx_result(r);
}

awaitable<AddrResult> Resolver::resolve_addresses(std::string host) {
  using namespace asio::experimental::awaitable_operators;
  std::weak_ptr<Core> core = core_;
  auto [v6, v4] = co_await (Core::async_query(core, host, kTypeAaaa, asio::use_awaitable) &&
                            Core::async_query(core, host, kTypeA, asio::use_awaitable));
  co_return combine_families(addr_result(v6, kTypeAaaa), addr_result(v4, kTypeA));
}

}  // namespace smtplb::dns
