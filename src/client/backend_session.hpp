// backend_session.hpp: one SMTP client session to a backend MTA.
//
// Named states (connecting -> ready -> busy -> ready ... -> closed) and one
// reply reader that treats the backend as untrusted input (smtp::ReplyParser).
// The session records the backend's EHLO capabilities so the relay never
// sends SMTPUTF8, 8BITMIME or SIZE to a backend that did not offer them.
#pragma once

#include <array>
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "balance/backend_state.hpp"
#include "client/failure.hpp"
#include "config/config.hpp"
#include "net/timed_socket.hpp"
#include "smtp/line_reader.hpp"
#include "smtp/reply.hpp"

namespace smtplb::client {

struct Capabilities {
  bool esmtp = false;
  bool pipelining = false;
  bool size = false;
  std::uint64_t size_limit = 0;  // 0: none announced
  bool eightbitmime = false;
  bool smtputf8 = false;
  bool enhanced_status_codes = false;
  std::vector<std::string> keywords;  // every EHLO keyword, upper case (health_check.expect)
  bool has(std::string_view keyword) const;
};

struct CommandResult {
  Failure failure = Failure::kNone;  // kNone: `reply` holds the backend's answer
  smtp::Reply reply;
};

class BackendSession {
 public:
  using Duration = std::chrono::milliseconds;
  enum class State { kConnecting, kReady, kBusy, kClosed };

  BackendSession(asio::any_io_executor ex, balance::BackendState& backend,
                 const config::Config& cfg);
  ~BackendSession();
  // This session holds one of the backend's max_connections slots, given
  // back when it is destroyed.
  void hold_slot() { holds_slot_ = true; }

  // Connect, read the 220 banner, EHLO (HELO if EHLO is refused), with the
  // configured backend timeouts or the given ones (health checks).
  awaitable<Failure> open(const tcp::endpoint& ep);
  awaitable<Failure> open(const tcp::endpoint& ep, Duration connect_timeout,
                          Duration reply_timeout);
  // The last reply that made open() fail (banner or EHLO), for logs.
  const smtp::Reply& open_reply() const { return open_reply_; }
  awaitable<CommandResult> command(std::string_view line, Duration d);
  // `d` bounds the whole reply, not each read: a backend that dribbles a
  // byte at a time cannot hold a transaction past it.
  awaitable<CommandResult> read_reply(Duration d);
  awaitable<Failure> send(std::string_view bytes, Duration d);
  // QUIT politely, bounded, then close.
  awaitable<void> quit();
  void close();
  // Stops whatever is pending (forced shutdown); the operation fails.
  void cancel() { sock_.cancel(); }

  balance::BackendState& backend() { return backend_; }
  const Capabilities& caps() const { return caps_; }
  State state() const { return state_; }
  void set_state(State s) { state_ = s; }
  bool is_open() const { return state_ != State::kClosed && sock_.is_open(); }
  // Bytes the backend sent that no command asked for (SECURITY.md 8).
  bool has_unsolicited_input() const { return lines_.has_pending() || sock_.available() > 0; }

  Clock::time_point created() const { return created_; }
  Clock::time_point last_used() const { return last_used_; }
  void touch() { last_used_ = Clock::now(); }
  bool reused = false;  // taken from the pool rather than freshly opened
  // Taken from the pool and not yet reset: the next pipelined group starts
  // with RSET (RFC 2920 allows it anywhere in a group), which saves the
  // round trip of a RSET of its own.
  bool rset_pending = false;

 private:
  bool holds_slot_ = false;

 public:
 private:
  Failure failure_from(const error_code& ec) const;

  balance::BackendState& backend_;
  const config::Config& cfg_;
  net::TimedSocket sock_;
  smtp::LineReader lines_{smtp::ReplyParser::kMaxReplyLine};
  smtp::ReplyParser parser_;
  std::array<char, 4096> buf_{};
  Capabilities caps_;
  smtp::Reply open_reply_;
  State state_ = State::kConnecting;
  Clock::time_point created_ = Clock::now();
  Clock::time_point last_used_ = created_;
};

Capabilities parse_ehlo(const smtp::Reply& r);

}  // namespace smtplb::client
