// timed_socket.hpp: a TCP socket whose every operation has a deadline.
//
// One timer per socket, armed around each operation: when it fires the
// socket's operations are cancelled and the operation reports
// asio::error::timed_out.  A generation counter keeps a timer that fired
// just as an operation completed from cancelling the next one.
#pragma once

#include <chrono>
#include <string_view>

#include "net/asio.hpp"

namespace smtplb::net {

class TimedSocket {
 public:
  using Duration = std::chrono::milliseconds;

  explicit TimedSocket(asio::any_io_executor ex) : timer_(ex), sock_(ex) {}
  explicit TimedSocket(tcp::socket sock) : timer_(sock.get_executor()), sock_(std::move(sock)) {}

  awaitable<error_code> connect(const tcp::endpoint& ep, Duration d);
  // Reads at least one byte into buf.
  awaitable<std::pair<error_code, std::size_t>> read_some(asio::mutable_buffer buf, Duration d);
  awaitable<error_code> write_all(std::string_view data, Duration d);

  // Cancels whatever is pending (shutdown, a forced close); the operation
  // sees operation_aborted.
  void cancel() {
    error_code ec;
    sock_.cancel(ec);
  }
  void close() {
    error_code ec;
    sock_.shutdown(tcp::socket::shutdown_both, ec);
    sock_.close(ec);
  }
  bool is_open() const { return sock_.is_open(); }
  tcp::socket& socket() { return sock_; }

 private:
  void arm(Duration d);
  void disarm();

  asio::steady_timer timer_;  // declared first: sock_ is built from its executor
  tcp::socket sock_;
  std::uint64_t generation_ = 0;
  bool timed_out_ = false;
};

}  // namespace smtplb::net
