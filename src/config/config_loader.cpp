// config_loader.cpp: YAML text -> validated Config, or every error found.
//
// Each error names FILE:LINE:COL (1-based, from yaml-cpp's 0-based marks)
// and the key or value at fault.  Validation goes on after an error so one
// `smtplb check` run reports all of them.  Keys reserved by DESIGN.md for
// capabilities this build does not have yet are refused by name rather than
// silently ignored.  Files the configuration names (TLS certificates and
// keys, CA files, the password file) are read here too, and temp_directory
// is tried (a spill file made and written), so a bad one is a
// configuration error at its key, at start-up and at a reload alike.
// The loader is in two files (config_loader_impl.hpp says which part is
// where).
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "auth/password_file.hpp"
#include "config/config.hpp"
#include "config/config_loader_impl.hpp"
#include "net/tls.hpp"
#include "relay/replay_buffer.hpp"
#include "smtp/address.hpp"
#include "smtp/idna.hpp"

namespace smtplb::config {

const char* to_string(Role r) {
  return r == Role::kInbound ? "inbound" : "submission";
}

const char* to_string(TlsMode m) {
  switch (m) {
    case TlsMode::kNone:
      return "none";
    case TlsMode::kStartTls:
      return "starttls";
    case TlsMode::kImplicit:
      return "implicit";
  }
  return "?";
}

const char* to_string(Identity i) {
  switch (i) {
    case Identity::kNone:
      return "none";
    case Identity::kXclient:
      return "xclient";
    case Identity::kProxyV1:
      return "proxy_v1";
    case Identity::kProxyV2:
      return "proxy_v2";
  }
  return "?";
}

const char* to_string(Algorithm a) {
  switch (a) {
    case Algorithm::kRoundRobin:
      return "round_robin";
    case Algorithm::kWeightedRoundRobin:
      return "weighted_round_robin";
    case Algorithm::kLeastConnections:
      return "least_connections";
    case Algorithm::kLeastLoad:
      return "least_load";
    case Algorithm::kRandomTwo:
      return "random_two";
    case Algorithm::kHashSender:
      return "hash_sender";
  }
  return "?";
}

const Pool* Config::find_pool(std::string_view name) const {
  for (const auto& p : pools)
    if (p.name == name) return &p;
  return nullptr;
}

const Listener* Config::find_listener(std::string_view name) const {
  for (const auto& l : listeners)
    if (l.name == name) return &l;
  return nullptr;
}

std::string ConfigError::str() const {
  std::ostringstream o;
  o << file << ":" << line << ":" << column << ": " << message;
  return o.str();
}

namespace {

// Keys that DESIGN.md reserves for later capabilities, with the reason
// they are refused today.
const std::set<std::string> kNotYet = {"spool"};

}  // namespace

namespace detail {

void Loader::error(const YAML::Mark& m, const std::string& msg) {
  // A node with no position (an empty document) reports 1:1.
  errors_.push_back({path_, std::max(m.line, 0) + 1, std::max(m.column, 0) + 1, msg});
}

void Loader::each_key(const YAML::Node& map, const std::string& where,
                      const std::set<std::string>& allowed,
                      const std::function<void(const std::string&, const YAML::Node&)>& handle) {
  if (!map.IsMap()) {
    error(map, where + " must be a mapping");
    return;
  }
  std::set<std::string> seen;
  for (auto it = map.begin(); it != map.end(); ++it) {
    const YAML::Node k = it->first;  // a copy: the iterator yields proxies
    if (!k.IsScalar()) {
      error(k, "keys of " + where + " must be plain names");
      continue;
    }
    std::string key = k.Scalar();
    if (!seen.insert(key).second) {
      error(k, "duplicate key `" + key + "` in " + where);
      continue;
    }
    if (!allowed.count(key)) {
      if (kNotYet.count(key))
        error(k, "key `" + key + "` in " + where +
                     " is reserved for a capability this build does not have yet");
      else
        error(k, "unknown key `" + key + "` in " + where);
      continue;
    }
    handle(key, it->second);
  }
}

std::optional<std::string> Loader::str(const YAML::Node& n, const std::string& what) {
  if (!n.IsScalar() || n.Scalar().empty()) {
    error(n, what + " must be a non-empty string");
    return std::nullopt;
  }
  return n.Scalar();
}

std::optional<long long> Loader::integer(const YAML::Node& n, const std::string& what, long long lo,
                                         long long hi) {
  long long v;
  if (!n.IsScalar() || !YAML::convert<long long>::decode(n, v)) {
    error(n, what + " must be an integer");
    return std::nullopt;
  }
  if (v < lo || v > hi) {
    error(n, what + " must be between " + std::to_string(lo) + " and " + std::to_string(hi));
    return std::nullopt;
  }
  return v;
}

bool Loader::boolean(const YAML::Node& n, const std::string& what) {
  bool b = false;
  if (!n.IsScalar() || !YAML::convert<bool>::decode(n, b))
    error(n, what + " must be true or false");
  return b;
}

std::optional<TlsMode> Loader::tls_mode(const YAML::Node& n, const std::string& what) {
  auto s = str(n, what);
  if (!s) return std::nullopt;
  if (*s == "starttls") return TlsMode::kStartTls;
  if (*s == "implicit") return TlsMode::kImplicit;
  error(n, what + ": `" + *s + "` is not starttls or implicit");
  return std::nullopt;
}

void Loader::load_listener_tls(const YAML::Node& v, ListenerTls& t) {
  const YAML::Node *cert_node = nullptr, *key_node = nullptr;
  YAML::Node cert_copy, key_copy;
  t.mode = TlsMode::kStartTls;
  each_key(v, "tls", {"certificate", "key", "mode"},
           [&](const std::string& key, const YAML::Node& x) {
             if (key == "certificate") {
               if (auto s = str(x, "tls.certificate")) t.certificate = *s;
               cert_copy = x;
               cert_node = &cert_copy;
             } else if (key == "key") {
               if (auto s = str(x, "tls.key")) t.key = *s;
               key_copy = x;
               key_node = &key_copy;
             } else if (auto m = tls_mode(x, "tls.mode")) {
               t.mode = *m;
             }
           });
  if (!v.IsMap()) return;
  if (!cert_node) error(v, "tls needs a `certificate` (PEM file)");
  if (!key_node) error(v, "tls needs a `key` (PEM file)");
  if (t.certificate.empty() || t.key.empty()) return;
  std::string why;
  t.context = net::make_server_tls(t.certificate, t.key, why);
  if (!t.context) error(why.find("key") == 0 ? *key_node : *cert_node, "tls: " + why);
}

void Loader::load_passwords(const YAML::Node& x, Auth& a) {
  auto loaded = auth::load_password_file(a.passwd_file);
  if (loaded.file) {
    a.passwords = loaded.file;
    return;
  }
  for (const auto& e : loaded.errors) {
    if (e.line == 0)  // the file as a whole (missing, unreadable, too big)
      error(x, "auth.passwd_file: " + e.message);
    else
      errors_.push_back({e.file, e.line, std::max(e.column, 1), e.message});
  }
}

void Loader::load_auth(const YAML::Node& v, Config& cfg) {
  Auth a;
  bool has_file = false;
  each_key(v, "auth", {"passwd_file", "delay_after", "max_failures", "lockout"},
           [&](const std::string& key, const YAML::Node& x) {
             if (key == "passwd_file") {
               has_file = true;
               if (auto s = str(x, "auth.passwd_file")) {
                 a.passwd_file = *s;
                 load_passwords(x, a);
               }
             } else if (key == "delay_after") {
               if (auto n = integer(x, "auth.delay_after", 0, 1000)) a.delay_after = int(*n);
             } else if (key == "max_failures") {
               // SECURITY.md 6: never locked out before the 3rd failure.
               if (auto n = integer(x, "auth.max_failures", 3, 100000)) a.max_failures = int(*n);
             } else if (key == "lockout") {
               if (auto d = duration(x, "auth.lockout")) a.lockout = *d;
             }
           });
  if (v.IsMap() && !has_file) error(v, "auth needs `passwd_file: FILE`");
  cfg.auth = std::move(a);
}

std::optional<Duration> Loader::duration(const YAML::Node& n, const std::string& what) {
  auto s = str(n, what);
  if (!s) return std::nullopt;
  auto d = parse_duration(*s);
  if (!d) error(n, what + ": bad duration `" + *s + "` (use e.g. 500ms, 5s, 2m, 1h)");
  return d;
}

std::optional<std::uint64_t> Loader::size(const YAML::Node& n, const std::string& what) {
  auto s = str(n, what);
  if (!s) return std::nullopt;
  auto v = parse_size(*s);
  if (!v) error(n, what + ": bad size `" + *s + "` (use e.g. 512KB, 25MB)");
  return v;
}

std::optional<Endpoint> Loader::endpoint(const YAML::Node& n, const std::string& what) {
  auto s = str(n, what);
  if (!s) return std::nullopt;
  auto e = parse_endpoint(*s);
  if (!e) error(n, what + ": bad address `" + *s + "` (use host:port or [v6]:port)");
  return e;
}

std::vector<std::pair<std::string, YAML::Node>> Loader::strings(const YAML::Node& n,
                                                                const std::string& what) {
  std::vector<std::pair<std::string, YAML::Node>> out;
  if (n.IsScalar()) {
    if (auto s = str(n, what)) out.emplace_back(*s, n);
    return out;
  }
  if (!n.IsSequence()) {
    error(n, what + " must be a string or a list of strings");
    return out;
  }
  for (const auto& item : n)
    if (auto s = str(item, what + " entry")) out.emplace_back(*s, item);
  return out;
}

std::vector<Network> Loader::networks(const YAML::Node& n, const std::string& what) {
  std::vector<Network> out;
  for (auto& [s, node] : strings(n, what)) {
    auto net = parse_network(s);
    if (!net)
      error(node, what + ": bad network `" + s + "` (use e.g. 10.0.0.0/8 or ::1/128)");
    else
      out.push_back(*net);
  }
  return out;
}

std::vector<std::string> Loader::domains(const YAML::Node& n, const std::string& what) {
  std::vector<std::string> out;
  for (auto& [s, node] : strings(n, what)) {
    std::string_view d = s;
    if (!d.empty() && d.front() == '.') d.remove_prefix(1);
    // Kept as A-labels (SECURITY.md 4): the recipient's domain is compared
    // in the same form, whichever form either was written in.
    std::optional<std::string> a_labels;
    if (smtp::is_valid_domain(d)) a_labels = smtp::to_a_labels(s);
    if (!a_labels)
      error(node, what + ": bad domain `" + s + "`");
    else
      out.push_back(std::move(*a_labels));
  }
  return out;
}

void Loader::load(const YAML::Node& root, Config& cfg) {
  if (!root.IsMap()) {
    error(root, "the configuration must be a mapping of keys");
    return;
  }
  std::map<std::string, YAML::Mark> listener_marks, pool_marks;
  std::vector<std::pair<std::string, YAML::Mark>> route_pools;
  each_key(root, "the configuration",
           {"hostname", "listeners", "local_domains", "trusted_networks", "pools", "routes",
            "limits", "timeouts", "connection_pool", "temp_directory", "workers", "admin", "dns",
            "proxy_networks", "auth"},
           [&](const std::string& key, const YAML::Node& v) {
             if (key == "hostname") {
               if (auto s = str(v, "hostname")) {
                 if (!smtp::is_valid_domain(*s))
                   error(v, "hostname: `" + *s + "` is not a valid host name");
                 cfg.hostname = *s;
               }
             } else if (key == "listeners") {
               // Listeners look at `auth`, wherever it is written.
               if (root["auth"]) {
                 load_auth(root["auth"], cfg);
                 root_auth_ = true;
               }
               load_listeners(v, cfg, listener_marks);
             } else if (key == "local_domains") {
               cfg.local_domains = domains(v, "local_domains");
             } else if (key == "trusted_networks") {
               cfg.trusted_networks = networks(v, "trusted_networks");
             } else if (key == "proxy_networks") {
               cfg.proxy_networks = networks(v, "proxy_networks");
             } else if (key == "pools") {
               load_pools(v, cfg, pool_marks);
             } else if (key == "routes") {
               load_routes(v, cfg, route_pools, listener_marks);
             } else if (key == "limits") {
               load_limits(v, cfg.limits);
             } else if (key == "timeouts") {
               load_timeouts(v, cfg.timeouts);
             } else if (key == "connection_pool") {
               load_connection_pool(v, cfg.backend_pool);
             } else if (key == "temp_directory") {
               if (auto s = str(v, "temp_directory")) {
                 cfg.temp_directory = *s;
                 temp_directory_mark_ = v.Mark();
               }
             } else if (key == "auth") {
               if (!root_auth_) load_auth(v, cfg);
               root_auth_ = true;
             } else if (key == "admin") {
               load_admin(v, cfg);
             } else if (key == "dns") {
               load_dns(v, cfg.dns);
             } else if (key == "workers") {
               if (auto n = integer(v, "workers", 0, 256)) cfg.workers = static_cast<int>(*n);
             }
           });
  // Messages over limits.replay_memory spill there: one that cannot
  // would get 451 4.3.0 each, so it is refused here, not found out then.
  if (auto why = relay::ReplayBuffer::probe_directory(cfg.temp_directory); !why.empty())
    error(temp_directory_mark_ ? *temp_directory_mark_ : root.Mark(),
          "temp_directory: `" + cfg.temp_directory + "` cannot hold replay spill files (" + why +
              ")" + (temp_directory_mark_ ? "" : "; it is the default, set temp_directory"));
  // Cross-references, once everything is read.
  if (!root["listeners"]) error(root, "no `listeners`: smtplb would accept no mail");
  if (!root["pools"]) error(root, "no `pools`: smtplb would have nowhere to relay");
  if (!root["routes"]) error(root, "no `routes`: no listener would be served");
  for (auto& [pool, mark] : route_pools)
    if (!pool_marks.count(pool)) error(mark, "routes: pool `" + pool + "` is not defined");
  for (const auto& l : cfg.listeners) {
    bool served = false;
    for (const auto& r : cfg.routes)
      if (r.listeners.empty() ||
          std::find(r.listeners.begin(), r.listeners.end(), l.name) != r.listeners.end())
        served = true;
    if (!served && root["routes"])
      error(listener_marks[l.name], "listener `" + l.name + "` is not served by any route");
  }
}

void Loader::load_listeners(const YAML::Node& v, Config& cfg,
                            std::map<std::string, YAML::Mark>& marks) {
  if (!v.IsSequence()) return error(v, "listeners must be a list");
  std::set<std::string> endpoints;
  for (const auto& item : v) {
    Listener l;
    bool has_name = false, has_listen = false;
    std::optional<bool> auth;
    each_key(item, "a listener",
             {"name", "listen", "role", "proxy_protocol", "tls", "require_tls", "auth"},
             [&](const std::string& key, const YAML::Node& x) {
               if (key == "name") {
                 if (auto s = str(x, "listener name")) {
                   l.name = *s;
                   has_name = true;
                   if (marks.count(l.name)) error(x, "duplicate listener name `" + l.name + "`");
                   marks[l.name] = x.Mark();
                 }
               } else if (key == "listen") {
                 has_listen = true;  // a bad value is its own error
                 if (auto e = endpoint(x, "listen")) {
                   if (!net::IpAddress::parse(e->host))
                     error(x, "listen: `" + e->host +
                                  "` is not an IP address (use e.g. 0.0.0.0:25 or [::]:25)");
                   l.listen = *e;
                   if (!endpoints.insert(e->str()).second)
                     error(x, "listen: `" + e->str() + "` is used by another listener");
                 }
               } else if (key == "proxy_protocol") {
                 l.proxy_protocol = boolean(x, "proxy_protocol");
               } else if (key == "require_tls") {
                 l.require_tls = boolean(x, "require_tls");
               } else if (key == "auth") {
                 auth = boolean(x, "auth");
               } else if (key == "tls") {
                 load_listener_tls(x, l.tls);
               } else if (key == "role") {
                 if (auto s = str(x, "role")) {
                   if (*s == "inbound")
                     l.role = Role::kInbound;
                   else if (*s == "submission")
                     l.role = Role::kSubmission;
                   else
                     error(x, "role: `" + *s + "` is not inbound or submission");
                 }
               }
             });
    if (item.IsMap() && !has_name) error(item, "a listener needs a `name`");
    if (item.IsMap() && !has_listen) error(item, "a listener needs `listen: host:port`");
    if (l.require_tls && l.tls.mode == TlsMode::kNone)
      error(item["require_tls"], "require_tls: listener `" + l.name + "` has no `tls`");
    if (auth && *auth) {
      if (!root_auth_)
        error(item["auth"], "auth: no top-level `auth: {passwd_file: FILE}` to check against");
      if (l.tls.mode == TlsMode::kNone)
        error(item["auth"], "auth: listener `" + l.name +
                                "` has no `tls`, and passwords are only taken under TLS");
    }
    // Submission listeners offer AUTH when they can (a password file and
    // TLS); inbound MX listeners only when asked.
    l.auth =
        auth ? *auth : (l.role == Role::kSubmission && root_auth_ && l.tls.mode != TlsMode::kNone);
    cfg.listeners.push_back(std::move(l));
  }
}

void Loader::load_admin(const YAML::Node& v, Config& cfg) {
  Admin a;
  bool has_listen = false;
  std::optional<YAML::Node> open_listen;  // admin.listen, when not loopback
  each_key(v, "admin", {"listen", "token_file"}, [&](const std::string& key, const YAML::Node& x) {
    if (key == "listen") {
      has_listen = true;
      if (auto e = endpoint(x, "admin.listen")) {
        auto ip = net::IpAddress::parse(e->host);
        if (!ip)
          error(x, "admin.listen: `" + e->host + "` is not an IP address");
        else if (!ip->is_loopback())
          open_listen = x;
        a.listen = *e;
      }
    } else if (key == "token_file") {
      if (auto s = str(x, "admin.token_file")) a.token_file = *s;
    }
  });
  if (v.IsMap() && !has_listen) error(v, "admin needs `listen: host:port`");
  // SECURITY.md 10: reachable from the network, the API would let anyone
  // there drain every backend.
  if (open_listen && a.token_file.empty())
    error(*open_listen, "admin.listen: `" + a.listen.host +
                            "` is not a loopback address, so admin.token_file is required "
                            "(anyone who can reach the API could drain every backend)");
  cfg.admin = a;
}

}  // namespace detail

namespace {

std::string system_hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

}  // namespace

LoadResult load_config_text(const std::string& text, const std::string& path) {
  LoadResult result;
  auto cfg = std::make_shared<Config>();
  cfg->path = path;
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    result.errors.push_back({path, e.mark.line + 1, e.mark.column + 1, "YAML: " + e.msg});
    return result;
  }
  detail::Loader loader(path, result.errors);
  try {
    loader.load(root, *cfg);
    loader.check_listener_refs(*cfg);
    cfg->proxy_identity_used = loader.proxy_identity_used();
  } catch (const YAML::Exception& e) {
    result.errors.push_back({path, e.mark.line + 1, e.mark.column + 1, "YAML: " + e.msg});
  }
  if (cfg->hostname.empty()) cfg->hostname = system_hostname();
  if (result.errors.empty()) result.config = std::move(cfg);
  return result;
}

LoadResult load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    LoadResult r;
    r.errors.push_back({path, 1, 1, "cannot read the file"});
    return r;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return load_config_text(ss.str(), path);
}

}  // namespace smtplb::config
