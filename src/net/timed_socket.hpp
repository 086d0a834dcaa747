// timed_socket.hpp: a TCP socket whose every operation has a deadline.
//
// One timer per socket, armed around each operation: when it fires the
// socket's operations are cancelled and the operation reports
// asio::error::timed_out.  The timer lives in a small block it shares with
// its handler rather than in the socket: the handler can run after the
// operation completed and the socket was destroyed (both finished in one
// reactor pass), and it must then do nothing.  The block is made at the
// first operation and can be given back between operations
// (release_timer()), so a socket nobody is waiting on costs no timer.  An
// operation that completed on its own is never reported as timed out.
//
// TLS (STARTTLS, implicit TLS, either side) is a layer the socket may gain
// once: after handshake() every read and write goes through OpenSSL.  The
// SSL stream borrows the TCP socket, so cancel() and the deadline timer work
// the same on both; its buffers exist only for connections that use TLS.
#pragma once

#include <boost/asio/ssl.hpp>
#include <chrono>
#include <memory>
#include <string_view>

#include "net/asio.hpp"

namespace smtplb::net {

class TimedSocket {
 public:
  using Duration = std::chrono::milliseconds;

  explicit TimedSocket(asio::any_io_executor ex) : sock_(std::move(ex)) {}
  explicit TimedSocket(tcp::socket sock) : sock_(std::move(sock)) {}
  ~TimedSocket() { release_timer(); }
  TimedSocket(const TimedSocket&) = delete;
  TimedSocket& operator=(const TimedSocket&) = delete;

  awaitable<error_code> connect(const tcp::endpoint& ep, Duration d);
  // Reads at least one byte into buf.
  awaitable<std::pair<error_code, std::size_t>> read_some(asio::mutable_buffer buf, Duration d);
  // Plaintext only: waits until the peer has sent something, then reads it
  // into `buf` at once.  No buffer is held while waiting, so `buf` may be a
  // scratch area every session of a core shares (the bytes must be taken
  // out of it before the caller waits again): an idle connection then
  // costs no read buffer, the way nginx keeps idle connections cheap.
  awaitable<std::pair<error_code, std::size_t>> read_when_ready(asio::mutable_buffer buf,
                                                                Duration d);
  awaitable<error_code> write_all(std::string_view data, Duration d);

  // Starts TLS on the connection (once).  A failed handshake leaves the
  // connection unusable: close it.
  awaitable<error_code> handshake(asio::ssl::context& ctx, asio::ssl::stream_base::handshake_type,
                                  Duration d);
  bool is_tls() const { return tls_ != nullptr; }
  // The OpenSSL connection, for its version, cipher and session (null
  // before handshake()).
  SSL* tls_handle() { return tls_ ? tls_->native_handle() : nullptr; }
  // Prepares the client side's handshake: SNI, the name the peer's
  // certificate must carry (when verify is on) and a session to resume.
  // Call before handshake(); false if OpenSSL refused the name.
  bool prepare_client_tls(asio::ssl::context& ctx, const std::string& server_name, bool verify,
                          SSL_SESSION* resume);

  // Frees the deadline timer while no operation is pending (the next one
  // makes it again): for sockets that wait long without an operation.
  void release_timer();
  // Cancels whatever is pending (shutdown, a forced close); the operation
  // sees operation_aborted.
  void cancel() {
    error_code ec;
    sock_.cancel(ec);
  }
  void close() {
    error_code ec;
    tls_.reset();
    sock_.shutdown(tcp::socket::shutdown_both, ec);
    sock_.close(ec);
  }
  bool is_open() const { return sock_.is_open(); }
  // Bytes the peer sent that nobody has read yet.
  std::size_t available() const {
    error_code ec;
    std::size_t n = sock_.available(ec);
    return ec ? 0 : n;
  }
  tcp::socket& socket() { return sock_; }

  // What the peer has done since the last read, seen without waiting or
  // consuming anything (one recv(MSG_PEEK)): nothing, sent bytes, or
  // closed (FIN or reset).  Over TLS, raw bytes may be a record that is
  // no data (a ticket, an alert), so only a closed connection and
  // decrypted bytes OpenSSL already holds are reported.
  enum class Peek { kQuiet, kInput, kClosed };
  Peek peek() const;

 private:
  struct Deadline {
    explicit Deadline(const asio::any_io_executor& ex) : timer(ex) {}
    Timer timer;
    std::uint64_t generation = 0;
    bool fired = false;
    bool alive = true;  // false once the TimedSocket is gone or let it go
  };

  void arm(Duration d);
  // The operation's result, with a deadline that cancelled it as timed_out.
  error_code disarm(error_code ec);

  using TlsStream = asio::ssl::stream<tcp::socket&>;
  awaitable<std::tuple<error_code, std::size_t>> start_read(asio::mutable_buffer buf);
  awaitable<std::tuple<error_code, std::size_t>> start_write(asio::const_buffer buf);

  tcp::socket sock_;
  std::unique_ptr<TlsStream> tls_;      // after handshake(); borrows sock_
  std::shared_ptr<Deadline> deadline_;  // made by arm()
};

}  // namespace smtplb::net
