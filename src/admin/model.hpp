// model.hpp: what the admin HTTP server asks of the running balancer.
//
// The server owns HTTP (parsing, Host/Origin/token checks, status lines);
// the runtime implements Model and owns the answers.  Every method is
// called on the admin server's executor, one request at a time per
// connection but possibly from several connections in turn, and must be
// thread-safe in the implementation (backend states are shared with the
// cores).  Names handed to act() are percent-decoded and free of control
// characters, but otherwise peer text: look them up, never trust them.
#pragma once

#include <string>
#include <string_view>

namespace smtplb::admin {

// POST /api/pools/{pool}/backends/{address}/{drain|ready|maint}
enum class Action { kDrain, kReady, kMaint };

struct ActionResult {
  int status = 200;  // 200 with a small JSON body; 404 unknown pool/backend
  std::string body;  // JSON (application/json); empty: the server sends {}
};

class Model {
 public:
  virtual ~Model() = default;
  virtual std::string pools_json() = 0;    // GET /api/pools body (application/json)
  virtual std::string metrics_text() = 0;  // GET /metrics body (Prometheus text 0.0.4)
  virtual ActionResult act(std::string_view pool, std::string_view backend, Action a) = 0;
  // POST /api/reload: 200 with the new generation, or 422 with the errors
  // `smtplb check` would print (the running configuration stays).
  virtual ActionResult reload() = 0;
};

}  // namespace smtplb::admin
