#include "net/timed_socket.hpp"

namespace smtplb::net {

void TimedSocket::arm(Duration d) {
  std::uint64_t gen = ++generation_;
  timed_out_ = false;
  timer_.expires_after(d);
  timer_.async_wait([this, gen](error_code ec) {
    // `this` is only touched when the wait really expired: a destroyed
    // socket's timer completes with operation_aborted.
    if (ec || gen != generation_) return;
    timed_out_ = true;
    error_code ignored;
    sock_.cancel(ignored);
  });
}

void TimedSocket::disarm() {
  ++generation_;
  timer_.cancel();
}

awaitable<error_code> TimedSocket::connect(const tcp::endpoint& ep, Duration d) {
  arm(d);
  auto [ec] = co_await sock_.async_connect(ep, use_nothrow);
  disarm();
  if (timed_out_) ec = asio::error::timed_out;
  if (!ec) {
    error_code ignored;
    sock_.set_option(tcp::no_delay(true), ignored);
  }
  co_return ec;
}

awaitable<std::pair<error_code, std::size_t>> TimedSocket::read_some(asio::mutable_buffer buf,
                                                                     Duration d) {
  arm(d);
  auto [ec, n] = co_await sock_.async_read_some(buf, use_nothrow);
  disarm();
  if (timed_out_) ec = asio::error::timed_out;
  co_return std::pair{ec, n};
}

awaitable<error_code> TimedSocket::write_all(std::string_view data, Duration d) {
  arm(d);
  auto [ec, n] =
      co_await asio::async_write(sock_, asio::buffer(data.data(), data.size()), use_nothrow);
  (void)n;
  disarm();
  if (timed_out_) ec = asio::error::timed_out;
  co_return ec;
}

}  // namespace smtplb::net
