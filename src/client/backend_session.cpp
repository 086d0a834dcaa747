#include "client/backend_session.hpp"

#include <charconv>

namespace smtplb::client {

namespace {

bool keyword_is(std::string_view line, std::string_view kw, std::string_view* arg) {
  if (line.size() < kw.size()) return false;
  for (std::size_t i = 0; i < kw.size(); ++i) {
    char c = line[i];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
    if (c != kw[i]) return false;
  }
  if (line.size() > kw.size() && line[kw.size()] != ' ' && line[kw.size()] != '=') return false;
  if (arg) *arg = line.size() > kw.size() ? line.substr(kw.size() + 1) : std::string_view();
  return true;
}

}  // namespace

bool Capabilities::has(std::string_view keyword) const {
  for (const auto& k : keywords) {
    if (k.size() != keyword.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < k.size() && same; ++i) {
      char c = keyword[i];
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
      same = k[i] == c;
    }
    if (same) return true;
  }
  return false;
}

Capabilities parse_ehlo(const smtp::Reply& r) {
  Capabilities c;
  c.esmtp = true;
  // The first line is the greeting; each further line is one keyword.
  for (std::size_t i = 1; i < r.lines.size(); ++i) {
    std::string_view l = r.lines[i];
    std::string kw(l.substr(0, l.find(' ')));
    for (char& ch : kw)
      if (ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 32);
    c.keywords.push_back(std::move(kw));
    std::string_view arg;
    if (keyword_is(l, "PIPELINING", nullptr))
      c.pipelining = true;
    else if (keyword_is(l, "8BITMIME", nullptr))
      c.eightbitmime = true;
    else if (keyword_is(l, "SMTPUTF8", nullptr))
      c.smtputf8 = true;
    else if (keyword_is(l, "ENHANCEDSTATUSCODES", nullptr))
      c.enhanced_status_codes = true;
    else if (keyword_is(l, "SIZE", &arg)) {
      c.size = true;
      std::uint64_t n = 0;
      auto [p, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), n);
      if (ec == std::errc()) c.size_limit = n;
    }
  }
  return c;
}

BackendSession::BackendSession(asio::any_io_executor ex, balance::BackendState& backend,
                               const config::Config& cfg)
    : backend_(backend), cfg_(cfg), sock_(ex) {}

BackendSession::~BackendSession() {
  if (holds_slot_) backend_.close_session();
}

Failure BackendSession::failure_from(const error_code& ec) const {
  if (ec == asio::error::timed_out) return Failure::kStalled;
  return Failure::kDropped;
}

awaitable<Failure> BackendSession::open(const tcp::endpoint& ep) {
  co_return co_await open(ep, cfg_.timeouts.backend_connect, cfg_.timeouts.backend_reply);
}

awaitable<Failure> BackendSession::open(const tcp::endpoint& ep, Duration connect_timeout,
                                        Duration reply_timeout) {
  state_ = State::kConnecting;
  error_code ec = co_await sock_.connect(ep, connect_timeout);
  if (ec) {
    close();
    co_return ec == asio::error::timed_out ? Failure::kConnectTimeout : Failure::kConnectRefused;
  }
  auto banner = co_await read_reply(reply_timeout);
  if (banner.failure != Failure::kNone) {
    close();
    co_return banner.failure;
  }
  if (banner.reply.code != 220) {
    open_reply_ = banner.reply;
    close();
    co_return Failure::kBannerRefused;
  }
  auto ehlo = co_await command("EHLO " + cfg_.hostname + "\r\n", reply_timeout);
  if (ehlo.failure != Failure::kNone) {
    close();
    co_return ehlo.failure;
  }
  if (ehlo.reply.code == 250) {
    caps_ = parse_ehlo(ehlo.reply);
  } else if (ehlo.reply.code == 421) {
    open_reply_ = ehlo.reply;
    close();
    co_return Failure::kShuttingDown;
  } else {
    // RFC 5321 3.2: a server that does not know EHLO gets HELO.
    open_reply_ = ehlo.reply;
    auto helo = co_await command("HELO " + cfg_.hostname + "\r\n", reply_timeout);
    if (helo.failure != Failure::kNone || helo.reply.code != 250) {
      close();
      co_return helo.failure != Failure::kNone ? helo.failure : Failure::kEhloRefused;
    }
    caps_ = Capabilities();
  }
  state_ = State::kReady;
  created_ = last_used_ = Clock::now();
  co_return Failure::kNone;
}

awaitable<CommandResult> BackendSession::read_reply(Duration d) {
  CommandResult r;
  const auto deadline = Clock::now() + d;
  for (;;) {
    auto item = lines_.next();
    if (item.kind == smtp::LineReader::Kind::kTooLong) {
      r.failure = Failure::kProtocol;
      close();
      co_return r;
    }
    if (item.kind == smtp::LineReader::Kind::kLine) {
      auto st = parser_.feed_line(item.line);
      if (st == smtp::ReplyParser::Status::kError) {
        r.failure = Failure::kProtocol;
        close();
        co_return r;
      }
      if (st == smtp::ReplyParser::Status::kDone) {
        r.reply = parser_.take();
        backend_.observe_reply(
            std::chrono::duration<double>(Clock::now() - (deadline - d)).count());
        co_return r;
      }
      continue;
    }
    auto left = std::chrono::duration_cast<Duration>(deadline - Clock::now());
    if (left <= Duration::zero()) {
      r.failure = Failure::kStalled;
      close();
      co_return r;
    }
    auto [ec, n] = co_await sock_.read_some(asio::buffer(buf_), left);
    if (ec) {
      r.failure = failure_from(ec);
      close();
      co_return r;
    }
    lines_.append(std::string_view(buf_.data(), n));
  }
}

awaitable<Failure> BackendSession::send(std::string_view bytes, Duration d) {
  error_code ec = co_await sock_.write_all(bytes, d);
  if (ec) {
    close();
    co_return failure_from(ec);
  }
  co_return Failure::kNone;
}

awaitable<CommandResult> BackendSession::command(std::string_view line, Duration d) {
  Failure f = co_await send(line, d);
  if (f != Failure::kNone) co_return CommandResult{f, {}};
  co_return co_await read_reply(d);
}

awaitable<void> BackendSession::quit() {
  if (is_open()) {
    // A short bound: the backend's answer changes nothing for us.
    auto r = co_await command("QUIT\r\n", std::chrono::seconds(2));
    (void)r;
  }
  close();
}

void BackendSession::close() {
  state_ = State::kClosed;
  sock_.close();
}

}  // namespace smtplb::client
