#include "net/timed_socket.hpp"

namespace smtplb::net {

void TimedSocket::arm(Duration d) {
  std::uint64_t gen = ++state_->generation;
  state_->fired = false;
  timer_.expires_after(d);
  timer_.async_wait([st = state_, gen, this](error_code ec) {
    if (ec || !st->alive || gen != st->generation) return;
    st->fired = true;
    error_code ignored;
    sock_.cancel(ignored);
  });
}

error_code TimedSocket::disarm(error_code ec) {
  ++state_->generation;
  timer_.cancel();
  if (state_->fired && ec == asio::error::operation_aborted) return asio::error::timed_out;
  return ec;
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

awaitable<std::pair<error_code, std::size_t>> TimedSocket::read_some(asio::mutable_buffer buf,
                                                                     Duration d) {
  arm(d);
  auto [ec, n] = co_await sock_.async_read_some(buf, use_nothrow);
  co_return std::pair{disarm(ec), n};
}

awaitable<error_code> TimedSocket::write_all(std::string_view data, Duration d) {
  arm(d);
  auto [ec, n] =
      co_await asio::async_write(sock_, asio::buffer(data.data(), data.size()), use_nothrow);
  (void)n;
  co_return disarm(ec);
}

}  // namespace smtplb::net
