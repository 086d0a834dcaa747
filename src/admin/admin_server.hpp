// admin_server.hpp: the admin HTTP/1.1 API (`admin: {listen, token_file}`).
//
// One acceptor and one coroutine per connection on the io_context it is
// given; what a request means is decided by route_request()
// (request_router.hpp), what it answers by the Model (model.hpp).
// Bounded like the SMTP side (SECURITY.md 7): at most kMaxConnections
// connections (more are closed at once), a request head of 8 KB and a
// body of 64 KB, 10 s to read a whole request (so a keep-alive connection
// idles at most that long) and 10 s to write a reply.  A request that does
// not parse gets 400 (413, 431 for the limits) and the connection closes.
// Every reply has Content-Type and `Cache-Control: no-store`; errors are
// `{"error": "..."}`.
//
// Threads: start() before the io_context runs; stop() from any thread (it
// dispatches to the io_context).  The Model must stay valid while the
// io_context runs the server's work, i.e. until stop() has taken effect.
// Connections keep what they use alive themselves, so the AdminServer may
// be destroyed before or after the io_context, once the io_context is not
// running.
#pragma once

#include <memory>
#include <string>

#include "admin/model.hpp"
#include "config/config.hpp"
#include "net/asio.hpp"

namespace smtplb::admin {

class AdminServer {
 public:
  // token: the bearer token every request must carry; empty: none asked.
  AdminServer(asio::io_context& io, const config::Admin& cfg, std::string token, Model& model);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Opens the acceptor and starts accepting; throws
  // boost::system::system_error when it cannot bind (start-up only).
  void start();
  // Closes the acceptor and every open connection; idempotent.
  void stop();
  // The address bound, after start(): with port 0 configured, the port
  // the kernel chose (what Host must then name).
  tcp::endpoint local_endpoint() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace smtplb::admin
