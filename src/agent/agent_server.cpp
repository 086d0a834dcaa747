#include "agent/agent_server.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/experimental/awaitable_operators.hpp>

#include "agent/agent_options.hpp"

namespace smtplb::agent {

namespace {

using error_code = boost::system::error_code;
using namespace asio::experimental::awaitable_operators;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

// After a failed accept (out of descriptors, say), wait this long before the
// next, rather than spin.
constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);

std::string peer_of(const tcp::socket& sock) {
  error_code ec;
  auto ep = sock.remote_endpoint(ec);
  if (ec) return "?";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

// Write the line, half-close, then drain the balancer's input to its EOF.
asio::awaitable<void> answer(tcp::socket& sock, const std::string& reply, std::size_t& discarded) {
  auto [ec, n] = co_await asio::async_write(sock, asio::buffer(reply), use_nothrow);
  (void)n;
  if (ec) co_return;
  error_code ignored;
  sock.shutdown(tcp::socket::shutdown_send, ignored);
  std::array<char, 512> buf;
  while (discarded < kMaxDiscard) {
    auto [rec, got] = co_await sock.async_read_some(asio::buffer(buf), use_nothrow);
    if (rec) co_return;
    discarded += got;
  }
}

}  // namespace

AgentServer::AgentServer(asio::io_context& io, const tcp::endpoint& listen)
    : io_(io), acceptor_(io) {
  acceptor_.open(listen.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  if (listen.address().is_v6()) {
    // "[::]:9777" takes IPv4 too, as operators expect of a wildcard.
    error_code ignored;
    acceptor_.set_option(asio::ip::v6_only(false), ignored);
  }
  acceptor_.bind(listen);
}

tcp::endpoint AgentServer::local_endpoint() const {
  error_code ec;
  return acceptor_.local_endpoint(ec);
}

void AgentServer::set_reply(std::string line) {
  reply_ = std::make_shared<const std::string>(std::move(line));
}

error_code AgentServer::start() {
  error_code ec;
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec) asio::co_spawn(io_, accept_loop(), asio::detached);
  return ec;
}

void AgentServer::stop() {
  error_code ignored;
  acceptor_.close(ignored);
}

asio::awaitable<void> AgentServer::accept_loop() {
  asio::steady_timer backoff(io_);
  while (acceptor_.is_open()) {
    auto [ec, sock] = co_await acceptor_.async_accept(use_nothrow);
    if (!acceptor_.is_open()) co_return;
    if (ec) {
      spdlog::warn("event=accept_failed error=\"{}\"", ec.message());
      backoff.expires_after(kAcceptBackoff);
      co_await backoff.async_wait(use_nothrow);
      continue;
    }
    if (*active_ >= kMaxConnections) {
      if (!full_)
        spdlog::warn("event=connections_full limit={} peer={}", kMaxConnections, peer_of(sock));
      full_ = true;
      error_code ignored;
      sock.close(ignored);
      continue;
    }
    full_ = false;
    ++*active_;
    asio::co_spawn(io_, serve(std::move(sock), reply_), asio::detached);
  }
}

asio::awaitable<void> AgentServer::serve(tcp::socket sock,
                                         std::shared_ptr<const std::string> reply) {
  struct Slot {
    std::shared_ptr<std::size_t> active;
    ~Slot() { --*active; }
  } slot{active_};
  const std::string peer = peer_of(sock);
  std::size_t discarded = 0;
  asio::steady_timer deadline(io_);
  deadline.expires_after(kConnectionDeadline);
  auto done = co_await (answer(sock, *reply, discarded) || deadline.async_wait(use_nothrow));
  spdlog::debug("event=query peer={} sent=\"{}\" discarded={} timed_out={}", peer,
                std::string_view(*reply).substr(0, reply->size() - 1), discarded,
                done.index() == 1 ? "yes" : "no");
  error_code ignored;
  sock.close(ignored);
}

}  // namespace smtplb::agent
