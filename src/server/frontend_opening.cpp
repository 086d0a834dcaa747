// frontend_opening.cpp: how a client connection becomes an SMTP session
// that can be trusted with what it says: the PROXY header and the
// per-client limits behind a proxy (SECURITY.md 5), the TLS handshake
// (implicit, or after STARTTLS's 220), and what RFC 3207 4.2 makes the
// session forget or drop when TLS begins.  Apart from the command loop
// because none of it is a command: it changes who the client is and what
// the stream is.
#include "log/log.hpp"
#include "server/frontend_session.hpp"
#include "server/policy.hpp"
#include "smtp/proxy_header.hpp"
#include "smtp/replies.hpp"

namespace smtplb::server {

namespace replies = smtp::replies;

awaitable<bool> FrontendSession::read_proxy_header() {
  // SECURITY.md 5: the header comes first and whole within
  // kProxyHeaderTimeout, or the connection is closed without a 220.
  std::string in;
  const auto deadline = Clock::now() + kProxyHeaderTimeout;
  auto refuse = [&](std::string_view why) {
    log::Record("proxy_refused", scope())
        .add("listener", listener_->name)
        .add("peer", client_ip_)
        .add("reason", why)
        .emit(spdlog::level::warn);
    return false;
  };
  for (;;) {
    auto p = smtp::parse_proxy_header(in);
    if (p.status == smtp::ProxyParse::Status::kInvalid) co_return refuse(p.error);
    if (p.status == smtp::ProxyParse::Status::kDone) {
      const std::string peer = client_ip_;
      if (p.header.local) {
        // v2 LOCAL, v1 UNKNOWN: no client named (a balancer's own health
        // check, or a client it could not describe).  The connection keeps
        // the balancer's address, so the logs name it and the per-client
        // limits count against it, but not the balancer's trust: being in
        // trusted_networks lets a balancer vouch for the clients it names,
        // not relay or skip AUTH itself (issue 14).  A health check still
        // gets its 220 and its QUIT.
        no_client_ = true;
      } else {
        ip_ = net::IpAddress(p.header.source.ip);
        client_port_ = p.header.source.port;
        local_ip_ = net::IpAddress(p.header.destination.ip);
        local_port_ = p.header.destination.port;
        client_ip_ = ip_.text();
      }
      // Bytes after the header are the client's (a client that talks
      // before the banner is the protocol layer's business).
      reader_.append(std::string_view(in).substr(p.consumed));
      refresh_trust();
      log::Record("proxy", scope())
          .add("peer", peer)
          .add("client", client_ip_)
          .add("port", client_port_)
          .add("version", p.header.version)
          .add("local", p.header.local ? "yes" : "no")
          .add("trusted", trusted_ ? "yes" : "no")
          .emit(spdlog::level::debug);
      if (!admit_proxied_client()) {
        queue(replies::too_many_connections());
        co_await flush();
        co_return false;
      }
      co_return true;
    }
    auto left = std::chrono::duration_cast<Duration>(deadline - Clock::now());
    if (left <= Duration::zero()) co_return refuse("no complete PROXY header in time");
    const std::size_t room = proxy_read_size(in);
    auto [ec, n] = co_await sock_.read_when_ready(asio::buffer(core_.scratch(), room), left);
    if (ec == asio::error::timed_out) co_return refuse("no complete PROXY header in time");
    if (ec) co_return refuse("closed before a complete PROXY header");
    in.append(static_cast<const char*>(core_.scratch().data()), n);
  }
}

bool FrontendSession::admit_proxied_client() {
  // The per-client limits the accept left to us, now for the client.
  const auto& limits = cfg_->limits;
  auto& shared = core_.shared();
  slot_.reset();
  bool refused = false;
  if (!trusted_ && !view_->gen->connection_rate->allow(ip_, Clock::now())) {
    shared.sessions.count(server::SessionCounters::Limit::kConnectionRate);
    refused = true;
  } else {
    auto r = shared.limiter.acquire(ip_, trusted_, limits.max_connections,
                                    limits.max_connections_per_ip);
    if (r == ConnectionLimiter::Result::kTotalFull)
      shared.sessions.count(server::SessionCounters::Limit::kConnections);
    if (r == ConnectionLimiter::Result::kClientFull)
      shared.sessions.count(server::SessionCounters::Limit::kConnectionsPerIp);
    refused = r != ConnectionLimiter::Result::kAcquired;
  }
  if (refused) {
    log::Record("connection_refused")
        .add("listener", listener_->name)
        .add("client", client_ip_)
        .add("reason", "connection limit or rate, behind a proxy")
        .emit(spdlog::level::warn);
    return false;
  }
  slot_ = std::make_unique<ConnectionSlot>(shared.limiter, ip_);
  return true;
}

std::size_t FrontendSession::proxy_read_size(std::string_view so_far) const {
  const std::size_t room = smtp::kMaxProxyHeader - so_far.size();
  if (listener_->tls.mode != config::TlsMode::kImplicit) return room;
  // v2 says its length in bytes 14-15; v1 ends at its CR LF, which only
  // reading byte by byte finds without reading past it (at most 107 reads,
  // once per connection).
  static constexpr std::string_view kV2Signature("\r\n\r\n\0\r\nQUIT\n", 12);
  if (so_far.empty()) return 1;
  if (kV2Signature.starts_with(so_far.substr(0, std::min(so_far.size(), kV2Signature.size())))) {
    if (so_far.size() < smtp::kProxyV2Fixed) return smtp::kProxyV2Fixed - so_far.size();
    const std::size_t len =
        (static_cast<unsigned char>(so_far[14]) << 8) | static_cast<unsigned char>(so_far[15]);
    const std::size_t total = smtp::kProxyV2Fixed + len;
    return total > so_far.size() ? std::min(room, total - so_far.size()) : 1;
  }
  return 1;
}

awaitable<bool> FrontendSession::start_tls() {
  // The listener's context, from the generation this session holds.
  error_code ec = co_await sock_.handshake(*listener_->tls.context, asio::ssl::stream_base::server,
                                           cfg_->timeouts.tls_handshake);
  if (ec) {
    core_.shared().sessions.tls_handshake_failures.fetch_add(1, std::memory_order_relaxed);
    log::Record("tls_failed", scope())
        .add("listener", listener_->name)
        .add("client", client_ip_)
        .add("reason",
             ec == asio::error::timed_out ? std::string("handshake timed out") : ec.message())
        .emit(spdlog::level::info);
    co_return false;
  }
  tls_ = std::make_unique<net::TlsInfo>(net::tls_info(sock_.tls_handle()));
  core_.shared().sessions.tls_handshakes.fetch_add(1, std::memory_order_relaxed);
  log::Record("tls", scope())
      .add("client", client_ip_)
      .add("version", tls_->version)
      .add("cipher", tls_->cipher)
      .add("resumed", tls_->resumed ? "yes" : "no")
      .emit(spdlog::level::debug);
  co_return true;
}

void FrontendSession::discard_pipelined_before_tls() {
  if (!reader_.has_pending()) return;
  log::Record("starttls_pipelined", scope())
      .add("client", client_ip_)
      .add("discarded", static_cast<long long>(reader_.pending().size()))
      .emit(spdlog::level::warn);
  reader_.clear();
}

void FrontendSession::forget_before_tls() {
  // RFC 3207 4.2: everything learnt before TLS is forgotten; the client
  // says EHLO again (the machine forgets the greeting and the AUTH).
  helo_name_.clear();
  auth_user_.clear();
}

}  // namespace smtplb::server
