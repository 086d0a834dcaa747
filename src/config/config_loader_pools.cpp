// config_loader_pools.cpp: the part of the configuration loader that reads
// where mail goes -- pools, their backends (TLS, identity, agents), health
// checks, MX and DNS, routes -- and the limits and timeouts; the document
// and the listeners are read in config_loader.cpp.
#include <algorithm>
#include <map>
#include <set>

#include "config/config_loader_impl.hpp"
#include "net/tls.hpp"
#include "smtp/address.hpp"
#include "smtp/idna.hpp"

namespace smtplb::config::detail {

void Loader::load_backend_tls(const YAML::Node& v, BackendTls& t) {
  t.mode = TlsMode::kStartTls;
  // Where a CA error points: the `ca` value, else the `tls` mapping.
  // reset(), not =: assigning to a yaml-cpp node that refers into the
  // document overwrites the document.
  YAML::Node ca_node;
  ca_node.reset(v);
  each_key(v, "backend tls", {"mode", "verify", "ca", "sni"},
           [&](const std::string& key, const YAML::Node& x) {
             if (key == "mode") {
               if (auto m = tls_mode(x, "tls.mode")) t.mode = *m;
             } else if (key == "verify") {
               t.verify = boolean(x, "tls.verify");
             } else if (key == "ca") {
               if (auto s = str(x, "tls.ca")) t.ca = *s;
               ca_node.reset(x);
             } else if (key == "sni") {
               if (auto s = str(x, "tls.sni")) {
                 if (!net::IpAddress::parse(*s) && !smtp::is_valid_domain(*s))
                   error(x, "tls.sni: `" + *s + "` is not a host name or IP address");
                 t.sni = *s;
               }
             }
           });
  if (!v.IsMap()) return;
  std::string why;
  t.client = net::ClientTls::make(t.verify, t.ca, why);
  if (!t.client) error(ca_node, "tls: " + why);
}

void Loader::load_health_check(const YAML::Node& v, HealthCheck& hc) {
  each_key(v, "health_check", {"interval", "timeout", "rise", "fall", "expect"},
           [&](const std::string& key, const YAML::Node& x) {
             if (key == "interval") {
               if (auto d = duration(x, "health_check.interval")) hc.interval = *d;
             } else if (key == "timeout") {
               if (auto d = duration(x, "health_check.timeout")) hc.timeout = *d;
             } else if (key == "rise") {
               if (auto n = integer(x, "health_check.rise", 1, 100)) hc.rise = int(*n);
             } else if (key == "fall") {
               if (auto n = integer(x, "health_check.fall", 1, 100)) hc.fall = int(*n);
             } else if (key == "expect") {
               for (auto& [s, node] : strings(x, "health_check.expect")) hc.expect.push_back(s);
             }
           });
}

void Loader::load_pools(const YAML::Node& v, Config& cfg,
                        std::map<std::string, YAML::Mark>& marks) {
  if (!v.IsSequence()) return error(v, "pools must be a list");
  for (const auto& item : v) {
    Pool p;
    bool has_backends = false;
    const YAML::Node* port_node = nullptr;
    YAML::Node port_copy;
    each_key(
        item, "a pool",
        {"name", "algorithm", "retries", "backends", "health_check", "slow_start", "mx", "port"},
        [&](const std::string& key, const YAML::Node& x) {
          if (key == "name") {
            if (auto s = str(x, "pool name")) {
              p.name = *s;
              if (marks.count(p.name)) error(x, "duplicate pool name `" + p.name + "`");
              marks[p.name] = x.Mark();
            }
          } else if (key == "algorithm") {
            if (auto s = str(x, "algorithm")) {
              static const std::map<std::string, Algorithm> names = {
                  {"round_robin", Algorithm::kRoundRobin},
                  {"weighted_round_robin", Algorithm::kWeightedRoundRobin},
                  {"least_connections", Algorithm::kLeastConnections},
                  {"least_load", Algorithm::kLeastLoad},
                  {"random_two", Algorithm::kRandomTwo},
                  {"hash_sender", Algorithm::kHashSender}};
              auto it = names.find(*s);
              if (it == names.end())
                error(x, "algorithm: unknown algorithm `" + *s + "`");
              else
                p.algorithm = it->second;
            }
          } else if (key == "retries") {
            if (auto n = integer(x, "retries", 0, 100)) p.retries = int(*n);
          } else if (key == "slow_start") {
            if (auto d = duration(x, "slow_start")) p.slow_start = *d;
          } else if (key == "backends") {
            has_backends = true;
            load_backends(x, p);
          } else if (key == "health_check") {
            p.health_check_configured = true;
            load_health_check(x, p.health_check);
          } else if (key == "mx") {
            load_mx(x, p);
          } else if (key == "port") {
            port_copy = x;
            port_node = &port_copy;
            if (auto n = integer(x, "port", 1, 65535)) p.port = static_cast<std::uint16_t>(*n);
          }
        });
    if (item.IsMap() && p.name.empty() && !item["name"]) error(item, "a pool needs a `name`");
    const bool has_mx = item.IsMap() && item["mx"];
    if (item.IsMap() && !has_backends && !has_mx)
      error(item, "pool `" + p.name + "` has no `backends` (nor `mx:`)");
    if (has_backends && has_mx)
      error(item["mx"], "pool `" + p.name +
                            "`: `mx:` and `backends:` exclude each other (an mx pool's "
                            "backends come from DNS)");
    if (port_node && !has_mx)
      error(*port_node, "pool `" + p.name +
                            "`: `port:` is the port of backends found by "
                            "`mx:`; listed backends carry their own");
    cfg.pools.push_back(std::move(p));
  }
}

void Loader::load_mx(const YAML::Node& x, Pool& p) {
  auto s = str(x, "mx");
  if (!s) return;
  if (*s == "recipient") {
    p.mx = MxMode::kRecipient;
    return;
  }
  std::string_view d = *s;
  if (!d.empty() && d.back() == '.') d.remove_suffix(1);  // absolute form
  // The DNS holds A-labels: an IDN is looked up as one.
  std::optional<std::string> a_labels;
  if (smtp::is_valid_domain(d) && d.find('.') != std::string_view::npos && d.front() != '[')
    a_labels = smtp::to_a_labels(d);
  if (!a_labels) {
    error(x, "mx: `" + *s + "` is not a domain name (or `recipient`)");
    return;
  }
  p.mx = MxMode::kDomain;
  p.mx_domain = std::move(*a_labels);
}

void Loader::load_dns(const YAML::Node& v, Dns& dns) {
  each_key(v, "dns",
           {"servers", "timeout", "attempts", "cache_entries", "max_stale", "min_ttl", "max_ttl",
            "max_in_flight"},
           [&](const std::string& key, const YAML::Node& x) {
             if (key == "servers") {
               for (auto& [s, node] : strings(x, "dns.servers")) {
                 // A bare address means port 53.
                 if (net::IpAddress::parse(s)) {
                   dns.servers.push_back(Endpoint{s, 53});
                 } else if (auto e = parse_endpoint(s); e && net::IpAddress::parse(e->host)) {
                   dns.servers.push_back(*e);
                 } else {
                   error(node, "dns.servers: `" + s +
                                   "` is not an IP address (use e.g. 127.0.0.1, "
                                   "127.0.0.1:5353 or [::1]:53)");
                 }
               }
             } else if (key == "timeout") {
               if (auto d = duration(x, "dns.timeout")) dns.timeout = *d;
             } else if (key == "attempts") {
               if (auto n = integer(x, "dns.attempts", 1, 10)) dns.attempts = int(*n);
             } else if (key == "cache_entries") {
               if (auto n = integer(x, "dns.cache_entries", 16, 10000000))
                 dns.cache_entries = int(*n);
             } else if (key == "max_stale") {
               if (auto d = duration(x, "dns.max_stale")) dns.max_stale = *d;
             } else if (key == "min_ttl") {
               if (auto d = duration(x, "dns.min_ttl")) dns.min_ttl = *d;
             } else if (key == "max_ttl") {
               if (auto d = duration(x, "dns.max_ttl")) dns.max_ttl = *d;
             } else if (key == "max_in_flight") {
               if (auto n = integer(x, "dns.max_in_flight", 1, 100000)) dns.max_in_flight = int(*n);
             }
           });
}

void Loader::load_backends(const YAML::Node& v, Pool& p) {
  if (!v.IsSequence()) return error(v, "backends must be a list");
  if (v.size() == 0) error(v, "pool `" + p.name + "` has an empty backend list");
  std::set<std::string> seen;
  for (const auto& item : v) {
    Backend b;
    bool has_address = false;
    each_key(item, "a backend",
             {"address", "weight", "max_connections", "max_rate", "agent", "tls", "identity"},
             [&](const std::string& key, const YAML::Node& x) {
               if (key == "address") {
                 has_address = true;  // a bad value is its own error
                 if (auto e = endpoint(x, "backend address")) {
                   b.address = *e;
                   b.name = x.Scalar();
                   if (!seen.insert(e->str()).second)
                     error(x, "backend `" + b.name + "` is listed twice in pool `" + p.name + "`");
                 }
               } else if (key == "weight") {
                 if (auto n = integer(x, "weight", 0, 1000)) b.weight = int(*n);
               } else if (key == "max_connections") {
                 if (auto n = integer(x, "max_connections", 1, 1000000))
                   b.max_connections = int(*n);
               } else if (key == "agent") {
                 bool has_port = false;
                 each_key(x, "agent", {"port", "interval"},
                          [&](const std::string& k2, const YAML::Node& y) {
                            if (k2 == "port") {
                              has_port = true;
                              if (auto n = integer(y, "agent.port", 1, 65535))
                                b.agent.port = static_cast<std::uint16_t>(*n);
                            } else if (auto d = duration(y, "agent.interval")) {
                              b.agent.interval = *d;
                            }
                          });
                 if (x.IsMap() && !has_port) error(x, "agent needs a `port`");
               } else if (key == "max_rate") {
                 if (auto s = str(x, "max_rate")) {
                   auto r = parse_rate(*s);
                   if (!r || r->per_second <= 0)
                     error(x, "max_rate: bad rate `" + *s + "` (use e.g. 100/s, 600/m)");
                   else
                     b.max_rate = *r;
                 }
               } else if (key == "tls") {
                 load_backend_tls(x, b.tls);
               } else if (key == "identity") {
                 if (auto s = str(x, "identity")) {
                   static const std::map<std::string, Identity> names = {
                       {"none", Identity::kNone},
                       {"xclient", Identity::kXclient},
                       {"proxy_v1", Identity::kProxyV1},
                       {"proxy_v2", Identity::kProxyV2}};
                   auto it = names.find(*s);
                   if (it == names.end())
                     error(x, "identity: `" + *s + "` is not none, xclient, proxy_v1 or proxy_v2");
                   else
                     b.identity = it->second;
                   if (b.identity == Identity::kProxyV1 || b.identity == Identity::kProxyV2)
                     proxy_identity_used_ = true;
                 }
               }
             });
    if (item.IsMap() && !has_address) error(item, "a backend needs an `address`");
    p.backends.push_back(std::move(b));
  }
}

void Loader::load_routes(const YAML::Node& v, Config& cfg,
                         std::vector<std::pair<std::string, YAML::Mark>>& pools,
                         std::map<std::string, YAML::Mark>& listener_marks) {
  (void)listener_marks;
  if (!v.IsSequence()) return error(v, "routes must be a list");
  for (const auto& item : v) {
    Route r;
    each_key(item, "a route",
             {"pool", "listener", "recipient_domain", "sender_domain", "client_network"},
             [&](const std::string& key, const YAML::Node& x) {
               if (key == "pool") {
                 if (auto s = str(x, "route pool")) {
                   r.pool = *s;
                   pools.emplace_back(*s, x.Mark());
                 }
               } else if (key == "listener") {
                 for (auto& [s, node] : strings(x, "route listener")) {
                   r.listeners.push_back(s);
                   listener_refs_.emplace_back(s, node.Mark());
                 }
               } else if (key == "recipient_domain") {
                 r.recipient_domains = domains(x, "recipient_domain");
               } else if (key == "sender_domain") {
                 r.sender_domains = domains(x, "sender_domain");
               } else if (key == "client_network") {
                 r.client_networks = networks(x, "client_network");
               }
             });
    if (item.IsMap() && !item["pool"]) error(item, "a route needs a `pool`");
    cfg.routes.push_back(std::move(r));
  }
}

void Loader::check_listener_refs(const Config& cfg) {
  for (auto& [name, mark] : listener_refs_) {
    bool found = false;
    for (const auto& l : cfg.listeners) found = found || l.name == name;
    if (!found) error(mark, "routes: listener `" + name + "` is not defined");
  }
}

void Loader::load_limits(const YAML::Node& v, Limits& l) {
  each_key(
      v, "limits",
      {"max_message_size", "max_recipients", "bare_line_endings", "max_line_length", "max_errors",
       "max_connections", "max_connections_per_ip", "ipv6_prefix", "max_connection_rate_per_ip",
       "max_message_rate_per_ip", "replay_memory", "replay_memory_total"},
      [&](const std::string& key, const YAML::Node& x) {
        if (key == "max_message_size") {
          if (auto s = size(x, "max_message_size")) l.max_message_size = *s;
        } else if (key == "max_recipients") {
          if (auto n = integer(x, "max_recipients", 1, 100000)) l.max_recipients = int(*n);
        } else if (key == "bare_line_endings") {
          if (auto s = str(x, "bare_line_endings")) {
            if (*s == "reject")
              l.bare_line_endings = BareLineEndings::kReject;
            else if (*s == "normalize")
              l.bare_line_endings = BareLineEndings::kNormalize;
            else
              error(x, "bare_line_endings: `" + *s + "` is not reject or normalize");
          }
        } else if (key == "max_line_length") {
          // RFC 5321 4.5.3.1.6: a server must take 1000-octet lines.
          constexpr std::uint64_t kRfcTextLine = 1000;
          if (auto s = str(x, "max_line_length")) {
            auto n = *s == "none" ? std::optional<std::uint64_t>(0) : parse_size(*s);
            if (!n)
              error(x,
                    "max_line_length: bad size `" + *s + "` (use e.g. 10KB; 0 or none: no limit)");
            else if (*n != 0 && *n < kRfcTextLine)
              error(x, "max_line_length: `" + *s +
                           "` is under the 1000 octets RFC 5321 4.5.3.1.6 allows; 0 or "
                           "none: no limit");
            else
              l.max_line_length = *n;
          }
        } else if (key == "max_errors") {
          if (auto n = integer(x, "max_errors", 1, 10000)) l.max_errors = int(*n);
        } else if (key == "max_connections") {
          if (auto n = integer(x, "max_connections", 1, 10000000)) l.max_connections = int(*n);
        } else if (key == "max_connections_per_ip") {
          if (auto n = integer(x, "max_connections_per_ip", 1, 10000000))
            l.max_connections_per_ip = int(*n);
        } else if (key == "max_connection_rate_per_ip" || key == "max_message_rate_per_ip") {
          if (auto s = str(x, key)) {
            auto r = parse_rate(*s);
            if (!r || r->per_second <= 0)
              error(x, key + ": bad rate `" + *s + "` (use e.g. 600/m, 10/s)");
            else if (key == "max_connection_rate_per_ip")
              l.max_connection_rate_per_ip = *r;
            else
              l.max_message_rate_per_ip = *r;
          }
        } else if (key == "replay_memory") {
          if (auto s = size(x, "replay_memory")) l.replay_memory = *s;
        } else if (key == "replay_memory_total") {
          if (auto s = size(x, "replay_memory_total")) l.replay_memory_total = *s;
        } else if (key == "ipv6_prefix") {
          if (auto n = integer(x, "limits.ipv6_prefix", 1, 128)) l.ipv6_prefix = int(*n);
        }
      });
}

void Loader::load_timeouts(const YAML::Node& v, Timeouts& t) {
  const std::map<std::string, Duration*> fields = {{"client_command", &t.client_command},
                                                   {"client_data", &t.client_data},
                                                   {"client_data_total", &t.client_data_total},
                                                   {"client_session", &t.client_session},
                                                   {"backend_connect", &t.backend_connect},
                                                   {"backend_reply", &t.backend_reply},
                                                   {"backend_data_done", &t.backend_data_done},
                                                   {"transaction", &t.transaction},
                                                   {"shutdown", &t.shutdown},
                                                   {"pool_wait", &t.pool_wait},
                                                   {"tls_handshake", &t.tls_handshake}};
  std::set<std::string> names;
  for (auto& [k, _] : fields) names.insert(k);
  each_key(v, "timeouts", names, [&](const std::string& key, const YAML::Node& x) {
    if (auto d = duration(x, "timeouts." + key)) {
      if (d->count() == 0)
        error(x, "timeouts." + key + " must be more than 0");
      else
        *fields.at(key) = *d;
    }
  });
}

void Loader::load_connection_pool(const YAML::Node& v, BackendPool& bp) {
  each_key(v, "connection_pool", {"idle_timeout", "max_age", "max_idle"},
           [&](const std::string& key, const YAML::Node& x) {
             if (key == "idle_timeout") {
               if (auto d = duration(x, "connection_pool.idle_timeout")) bp.idle_timeout = *d;
             } else if (key == "max_age") {
               if (auto d = duration(x, "connection_pool.max_age")) bp.max_age = *d;
             } else if (key == "max_idle") {
               if (auto n = integer(x, "connection_pool.max_idle", 0, 10000)) bp.max_idle = int(*n);
             }
           });
}

}  // namespace smtplb::config::detail
