// agent_server.hpp: smtplb-agent's TCP side of HAProxy's agent check.
//
// For each connection: write the current reply line, half-close, then read
// and discard what the balancer sent (its `agent-send` text, if any) until
// it closes.  Reading before the close matters: closing a socket with
// unread input sends a reset (RFC 1122 4.2.2.13), and a reset can destroy
// the reply in the balancer's receive buffer before it was read.
//
// Bounds: a connection lives at most kConnectionDeadline, reads at most
// kMaxDiscard bytes, and at most kMaxConnections are served at once (more
// are closed at accept, unanswered).  The reply is a shared snapshot: a
// connection answers with the line that was current when it was accepted.
//
// One thread: set_reply(), start() and stop() run on the io_context's
// thread (the sampler posts its lines there).
#pragma once

#include <boost/asio.hpp>
#include <memory>
#include <string>

namespace smtplb::agent {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

class AgentServer {
 public:
  // Binds; throws boost::system::system_error (start-up only).
  AgentServer(asio::io_context& io, const tcp::endpoint& listen);

  tcp::endpoint local_endpoint() const;
  void set_reply(std::string line);
  // Listens and accepts; the error if it cannot listen.
  boost::system::error_code start();
  // Closes the listener; connections in progress finish on their own.
  void stop();

 private:
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(tcp::socket sock, std::shared_ptr<const std::string> reply);

  asio::io_context& io_;
  tcp::acceptor acceptor_;
  std::shared_ptr<const std::string> reply_;  // set before start()
  // Connections being served.  Shared with each one's coroutine: frames
  // still pending when the io_context is destroyed (after this object, at
  // exit) give their slot back to a counter that is still there.
  std::shared_ptr<std::size_t> active_ = std::make_shared<std::size_t>(0);
  bool full_ = false;  // at kMaxConnections; logged once per episode
};

}  // namespace smtplb::agent
