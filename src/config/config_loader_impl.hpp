// config_loader_impl.hpp: the loader behind load_config() (config_loader.cpp),
// for its two source files only: config_loader.cpp (the document, scalars,
// listeners, TLS files, AUTH, admin) and config_loader_pools.cpp (pools,
// backends, health checks, MX, DNS, routes, limits and timeouts).  Not a
// public interface.
#pragma once

#include <yaml-cpp/yaml.h>

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace smtplb::config::detail {

class Loader {
 public:
  Loader(std::string path, std::vector<ConfigError>& errors)
      : path_(std::move(path)), errors_(errors) {}

  void error(const YAML::Mark& m, const std::string& msg);
  void error(const YAML::Node& n, const std::string& msg) { error(n.Mark(), msg); }

  // Iterates a mapping, reporting unknown keys; `handle` gets each known key.
  void each_key(const YAML::Node& map, const std::string& where,
                const std::set<std::string>& allowed,
                const std::function<void(const std::string&, const YAML::Node&)>& handle);

  std::optional<std::string> str(const YAML::Node& n, const std::string& what);

  std::optional<long long> integer(const YAML::Node& n, const std::string& what, long long lo,
                                   long long hi);

  bool boolean(const YAML::Node& n, const std::string& what);

  std::optional<TlsMode> tls_mode(const YAML::Node& n, const std::string& what);

  void load_listener_tls(const YAML::Node& v, ListenerTls& t);

  void load_backend_tls(const YAML::Node& v, BackendTls& t);

  // The password file is read here, so `smtplb check` and a reload see its
  // errors with their own line and column.
  void load_passwords(const YAML::Node& x, Auth& a);

  void load_auth(const YAML::Node& v, Config& cfg);

  std::optional<Duration> duration(const YAML::Node& n, const std::string& what);

  std::optional<std::uint64_t> size(const YAML::Node& n, const std::string& what);

  std::optional<Endpoint> endpoint(const YAML::Node& n, const std::string& what);

  // A string or a list of strings.
  std::vector<std::pair<std::string, YAML::Node>> strings(const YAML::Node& n,
                                                          const std::string& what);

  std::vector<Network> networks(const YAML::Node& n, const std::string& what);

  std::vector<std::string> domains(const YAML::Node& n, const std::string& what);

  void load(const YAML::Node& root, Config& cfg);

  void load_listeners(const YAML::Node& v, Config& cfg, std::map<std::string, YAML::Mark>& marks);

  void load_health_check(const YAML::Node& v, HealthCheck& hc);

  void load_pools(const YAML::Node& v, Config& cfg, std::map<std::string, YAML::Mark>& marks);

  void load_mx(const YAML::Node& x, Pool& p);

  void load_dns(const YAML::Node& v, Dns& dns);

  void load_backends(const YAML::Node& v, Pool& p);

  void load_routes(const YAML::Node& v, Config& cfg,
                   std::vector<std::pair<std::string, YAML::Mark>>& pools,
                   std::map<std::string, YAML::Mark>& listener_marks);

  bool proxy_identity_used() const { return proxy_identity_used_; }

  void check_listener_refs(const Config& cfg);

  void load_limits(const YAML::Node& v, Limits& l);

  void load_timeouts(const YAML::Node& v, Timeouts& t);

  void load_admin(const YAML::Node& v, Config& cfg);

  void load_connection_pool(const YAML::Node& v, BackendPool& bp);

  std::vector<std::pair<std::string, YAML::Mark>> listener_refs_;
  bool root_auth_ = false;                         // the top-level `auth` is read
  std::optional<YAML::Mark> temp_directory_mark_;  // where temp_directory is set, if it is
  bool proxy_identity_used_ = false;

 private:
  std::string path_;
  std::vector<ConfigError>& errors_;
};

}  // namespace smtplb::config::detail
