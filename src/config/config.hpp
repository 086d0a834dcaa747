// config.hpp: the validated, immutable configuration.
//
// Every limit and timeout an operator tunes is a named field here with its
// default (DESIGN.md "Behaviour the contract fixes"); nothing else in the
// code spells these numbers.  A Config is built once by load_config() and
// shared read-only (std::shared_ptr<const Config>) by every core.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/units.hpp"

namespace boost::asio::ssl {
class context;
}
namespace smtplb::net {
class ClientTls;
}
namespace smtplb::auth {
class PasswordFile;
}

namespace smtplb::config {

using namespace std::chrono_literals;

enum class Role { kInbound, kSubmission };
enum class Algorithm {
  kRoundRobin,
  kWeightedRoundRobin,
  kLeastConnections,
  kLeastLoad,
  kRandomTwo,
  kHashSender,
};
enum class BareLineEndings { kReject, kNormalize };

const char* to_string(Role r);
const char* to_string(Algorithm a);

enum class TlsMode {
  kNone,
  kStartTls,  // RFC 3207: plaintext, then STARTTLS
  kImplicit,  // RFC 8314: TLS from the first byte (port 465)
};
const char* to_string(TlsMode m);

struct ListenerTls {
  TlsMode mode = TlsMode::kNone;
  std::string certificate;  // PEM chain, leaf first
  std::string key;          // PEM private key
  // Built by the loader from the files, so `smtplb check` and a reload
  // read them (a renewed certificate takes effect at SIGHUP).
  std::shared_ptr<boost::asio::ssl::context> context;
  bool operator==(const ListenerTls& o) const {
    return mode == o.mode && certificate == o.certificate && key == o.key;
  }
};

struct Listener {
  std::string name;
  Endpoint listen;
  Role role = Role::kInbound;
  // The connection starts with a PROXY v1/v2 header from an upstream TCP
  // balancer in proxy_networks, naming the real client.
  bool proxy_protocol = false;
  ListenerTls tls = {};
  bool require_tls = false;  // MAIL before STARTTLS gets 530 5.7.0
  // AUTH PLAIN/LOGIN is offered (after TLS) with the top-level `auth`
  // password file; default: on submission listeners.
  bool auth = false;
};

struct HealthCheck {
  Duration interval = 5s;
  Duration timeout = 2s;
  int rise = 2;
  int fall = 3;
  std::vector<std::string> expect;
};

struct Agent {
  std::uint16_t port = 0;  // 0: no agent
  Duration interval = 2s;
  bool operator==(const Agent&) const = default;
};

struct BackendTls {
  TlsMode mode = TlsMode::kNone;
  bool verify = true;                      // the certificate must chain to `ca` and name `sni`
  std::string ca;                          // PEM file; empty: the system's CA store
  std::string sni;                         // name sent and checked; empty: the address's host
  std::shared_ptr<net::ClientTls> client;  // built by the loader
  bool operator==(const BackendTls& o) const {
    return mode == o.mode && verify == o.verify && ca == o.ca && sni == o.sni;
  }
};

// How a backend learns who the client is (DESIGN.md "Identity is never
// silently lost").
enum class Identity {
  kNone,
  kXclient,  // Postfix XCLIENT before each MAIL; a backend without it is down
  kProxyV1,  // a PROXY header on each connection, one client per connection
  kProxyV2,
};
const char* to_string(Identity i);

struct Backend {
  Endpoint address;
  std::string name;  // address as written in the config, the backend's key
  int weight = 1;
  int max_connections = 0;  // 0: unlimited
  Rate max_rate;            // new transactions per second; 0: unlimited
  Agent agent;              // HAProxy-compatible agent check
  BackendTls tls = {};
  Identity identity = Identity::kNone;
  // Found by an `mx:` pool: the exchange and its preference (-1: listed).
  std::string mx_host;
  int mx_preference = -1;
  // A reload keeps a backend's state only when none of this changed.
  bool operator==(const Backend&) const = default;
};

// Where a pool's backends come from.
enum class MxMode {
  kNone,       // `backends:` lists them
  kDomain,     // `mx: DOMAIN`: the MX hosts of that domain, kept current from DNS
  kRecipient,  // `mx: recipient`: the MX hosts of each transaction's recipient domain
};

struct Pool {
  std::string name;
  Algorithm algorithm = Algorithm::kRoundRobin;
  int retries = 2;         // further backends a transaction may be replayed on
  Duration slow_start{0};  // a backend back up gets its share gradually over this
  std::vector<Backend> backends;
  HealthCheck health_check;
  bool health_check_configured = false;  // active checks run only when asked for
  MxMode mx = MxMode::kNone;
  std::string mx_domain;    // kDomain: lowercased, without a trailing dot
  std::uint16_t port = 25;  // of backends found in DNS
};

// The resolver for `mx:` pools (c-ares, on the cores' event loops).
struct Dns {
  std::vector<Endpoint> servers;  // empty: the nameservers of /etc/resolv.conf
  Duration timeout = 2s;          // per attempt
  int attempts = 2;
  int cache_entries = 10000;  // per core, answers and negative answers together
  // Answers are kept at least this long (a burst shares one lookup even
  // with TTL 0) and at most max_ttl (a changed MX shows within it).
  Duration min_ttl = 5s;
  Duration max_ttl = 1h;
  // A refresh that fails keeps the last good answer this long past its TTL.
  Duration max_stale = 1h;
  // Queries out at once, per worker; as many more queue (dns::ResolverOptions).
  int max_in_flight = 1000;
  bool operator==(const Dns&) const = default;
};

struct Route {
  std::string pool;
  std::vector<std::string> listeners;          // empty: any
  std::vector<std::string> recipient_domains;  // empty: any; ".x" matches subdomains
  std::vector<std::string> sender_domains;     // empty: any
  std::vector<Network> client_networks;        // empty: any
};

struct Limits {
  std::uint64_t max_message_size = 25ull << 20;
  int max_recipients = 100;
  BareLineEndings bare_line_endings = BareLineEndings::kReject;
  // The longest message line accepted, in octets with its CR LF (RFC 5321
  // 4.5.3.1.6 counting); a longer one gets 554 5.6.0 after the final dot.
  // 0: no limit, the default (RFC 5321 4.5.3.1: avoid limits; Postfix
  // relays such lines).  Otherwise at least 1000.
  std::uint64_t max_line_length = 0;
  int max_errors = 10;
  int max_connections = 10000;
  int max_connections_per_ip = 50;
  Rate max_connection_rate_per_ip{600.0 / 60, 600};  // 600/m
  Rate max_message_rate_per_ip{6000.0 / 60, 6000};   // 6000/m
  // Message bytes kept in memory for replay before spilling to an unlinked
  // temporary file, so a 50 MB message costs bounded memory.
  std::uint64_t replay_memory = 1ull << 20;
  // All messages' replay bytes in memory together, every core: past it a
  // message's bytes go to its spill file from the first one, so 10,000
  // sessions cannot hold 10,000 x replay_memory.
  std::uint64_t replay_memory_total = 256ull << 20;
  // Per-client limits (connections, rates, the AUTH throttle) count an
  // IPv6 client by this prefix length, since one host usually holds a
  // whole /64; IPv4 clients count by their whole address.  1..128.
  int ipv6_prefix = 64;
};

struct Timeouts {
  Duration client_command = 5min;
  Duration client_data = 3min;
  Duration client_data_total = 10min;
  Duration client_session = 1h;
  Duration backend_connect = 5s;
  Duration backend_reply = 10s;
  Duration backend_data_done = 15s;
  Duration transaction = 2min;
  // How long SIGTERM lets transactions in flight finish before the rest
  // are closed with 421.
  Duration shutdown = 10s;
  // When every backend of a pool is at max_connections or max_rate, how
  // long a transaction waits for room before 451 4.4.5.
  Duration pool_wait = 5s;
  // A TLS handshake, either side, from its first byte to its end.
  Duration tls_handshake = 30s;
};

struct BackendPool {
  // Pooled backend sessions (per backend, per core).
  Duration idle_timeout = 30s;
  Duration max_age = 5min;
  int max_idle = 16;
};

// AUTH PLAIN/LOGIN for clients (RFC 4954), on listeners with `auth`.
struct Auth {
  std::string passwd_file;                              // user:crypt(3)-hash lines
  std::shared_ptr<const auth::PasswordFile> passwords;  // read by the loader
  // Failed attempts per client address: replies slow down after
  // `delay_after` failures, and after `max_failures` AUTH is refused with
  // 421 for `lockout`.
  int delay_after = 2;
  int max_failures = 10;
  Duration lockout = 10min;
};

struct Admin {
  Endpoint listen;
  std::string token_file;  // empty: no token asked (loopback only is advised)
};

struct Config {
  std::string path;  // file it was read from
  std::string hostname;
  std::vector<Listener> listeners;
  std::vector<std::string> local_domains;  // lowercased
  std::vector<Network> trusted_networks;
  std::vector<Network> proxy_networks;  // may send PROXY headers; empty: nobody
  std::vector<Pool> pools;
  std::vector<Route> routes;
  Limits limits;
  Timeouts timeouts;
  BackendPool backend_pool;
  std::string temp_directory = "/tmp";  // where replay spill files live (unlinked)
  int workers = 0;                      // 0: one per core
  std::optional<Admin> admin;           // the admin HTTP API, when configured
  std::optional<Auth> auth;             // clients may AUTH on listeners with `auth`
  Dns dns;
  // Some backend has `identity: proxy_v1|proxy_v2` (so sessions learn the
  // address clients connected to).
  bool proxy_identity_used = false;

  const Pool* find_pool(std::string_view name) const;
  const Listener* find_listener(std::string_view name) const;
};

struct ConfigError {
  std::string file;
  int line = 0;    // 1-based
  int column = 0;  // 1-based
  std::string message;
  std::string str() const;
};

struct LoadResult {
  std::shared_ptr<const Config> config;  // null when errors is not empty
  std::vector<ConfigError> errors;
};

LoadResult load_config(const std::string& path);
LoadResult load_config_text(const std::string& text, const std::string& path);

}  // namespace smtplb::config
