#include "net/timed_socket.hpp"

#include <sys/socket.h>

#include <cerrno>

namespace smtplb::net {

void TimedSocket::arm(Duration d) {
  if (!deadline_) deadline_ = std::make_shared<Deadline>(sock_.get_executor());
  Deadline& dl = *deadline_;
  std::uint64_t gen = ++dl.generation;
  dl.fired = false;
  dl.timer.expires_after(d);
  dl.timer.async_wait([st = deadline_, gen, this](error_code ec) {
    if (ec || !st->alive || gen != st->generation) return;
    st->fired = true;
    error_code ignored;
    sock_.cancel(ignored);
  });
}

error_code TimedSocket::disarm(error_code ec) {
  ++deadline_->generation;
  deadline_->timer.cancel();
  if (deadline_->fired && ec == asio::error::operation_aborted) return asio::error::timed_out;
  return ec;
}

void TimedSocket::release_timer() {
  if (!deadline_) return;
  // A wait still pending holds the block until its handler has run.
  deadline_->alive = false;
  deadline_->timer.cancel();
  deadline_.reset();
}

awaitable<error_code> TimedSocket::connect(const tcp::endpoint& ep, Duration d) {
  arm(d);
  auto [ec] = co_await sock_.async_connect(ep, use_nothrow);
  ec = disarm(ec);
  if (!ec) {
    error_code ignored;
    sock_.set_option(tcp::no_delay(true), ignored);
  }
  co_return ec;
}

// Plain functions choosing the stream; the coroutines below await what they
// return: one suspension point per operation.  (Not a g++ 12 workaround:
// co_await in several branches works with g++ 12.2.  What breaks is a
// co_await in an `if` condition of a coroutine with no local variables,
// Gcc12Coroutines.CoAwaitInAnIfCondition* in tests/unit/compiler/.)
awaitable<std::tuple<error_code, std::size_t>> TimedSocket::start_read(asio::mutable_buffer buf) {
  if (tls_) return tls_->async_read_some(buf, use_nothrow);
  return sock_.async_read_some(buf, use_nothrow);
}

awaitable<std::tuple<error_code, std::size_t>> TimedSocket::start_write(asio::const_buffer buf) {
  if (tls_) return asio::async_write(*tls_, buf, use_nothrow);
  return asio::async_write(sock_, buf, use_nothrow);
}

awaitable<std::pair<error_code, std::size_t>> TimedSocket::read_some(asio::mutable_buffer buf,
                                                                     Duration d) {
  arm(d);
  auto [ec, n] = co_await start_read(buf);
  co_return std::pair{disarm(ec), n};
}

awaitable<std::pair<error_code, std::size_t>> TimedSocket::read_when_ready(asio::mutable_buffer buf,
                                                                           Duration d) {
  if (!sock_.non_blocking()) {
    error_code ignored;
    sock_.non_blocking(true, ignored);
  }
  // Try first: the bytes may be there already (pipelined commands, a
  // readiness edge already consumed), and a wait would not see them.
  for (;;) {
    error_code ec;
    std::size_t n = sock_.read_some(buf, ec);
    if (ec != asio::error::would_block && ec != asio::error::try_again) co_return std::pair{ec, n};
    arm(d);
    auto [wait_ec] = co_await sock_.async_wait(tcp::socket::wait_read, use_nothrow);
    wait_ec = disarm(wait_ec);
    if (wait_ec) co_return std::pair{wait_ec, std::size_t{0}};
  }
}

awaitable<error_code> TimedSocket::write_all(std::string_view data, Duration d) {
  arm(d);
  auto [ec, n] = co_await start_write(asio::buffer(data.data(), data.size()));
  (void)n;
  co_return disarm(ec);
}

bool TimedSocket::prepare_client_tls(asio::ssl::context& ctx, const std::string& server_name,
                                     bool verify, SSL_SESSION* resume) {
  tls_ = std::make_unique<TlsStream>(sock_, ctx);
  SSL* ssl = tls_->native_handle();
  if (resume) SSL_set_session(ssl, resume);
  if (server_name.empty()) return true;
  error_code ec;
  asio::ip::make_address(server_name, ec);
  const bool is_ip = !ec;
  // SNI carries host names only (RFC 6066 3).
  if (!is_ip && SSL_set_tlsext_host_name(ssl, server_name.c_str()) != 1) return false;
  if (!verify) return true;
  if (is_ip) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    return X509_VERIFY_PARAM_set1_ip_asc(param, server_name.c_str()) == 1;
  }
  // RFC 6125: the name must match a subjectAltName, no partial wildcards.
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  return SSL_set1_host(ssl, server_name.c_str()) == 1;
}

awaitable<error_code> TimedSocket::handshake(asio::ssl::context& ctx,
                                             asio::ssl::stream_base::handshake_type type,
                                             Duration d) {
  if (!tls_) tls_ = std::make_unique<TlsStream>(sock_, ctx);
  arm(d);
  auto [ec] = co_await tls_->async_handshake(type, use_nothrow);
  co_return disarm(ec);
}

TimedSocket::Peek TimedSocket::peek() const {
  if (!sock_.is_open()) return Peek::kClosed;
  if (tls_ && SSL_pending(const_cast<TlsStream&>(*tls_).native_handle()) > 0) return Peek::kInput;
  char c;
  const ssize_t n =
      ::recv(const_cast<tcp::socket&>(sock_).native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return Peek::kClosed;
  if (n < 0)
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? Peek::kQuiet : Peek::kClosed;
  return tls_ ? Peek::kQuiet : Peek::kInput;
}

}  // namespace smtplb::net
