#include "app/status.hpp"

#include <array>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <fstream>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "net/asio.hpp"

namespace smtplb::app {

namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;

namespace {

// A pools document is a few hundred bytes per backend.
constexpr std::uint64_t kBodyLimit = 16 * 1024 * 1024;

// Peer text (a backend's reply in `reason`, names) goes to a terminal:
// no control character may reach it.
std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    out.push_back(u < 0x20 || u == 0x7f ? '?' : c);
  }
  return out;
}

std::string text_of(const json::value* v) {
  if (!v || v->is_null()) return "-";
  if (v->is_string()) {
    std::string s = printable(v->get_string());
    return s.empty() ? "-" : s;
  }
  if (v->is_int64()) return std::to_string(v->get_int64());
  if (v->is_uint64()) return std::to_string(v->get_uint64());
  if (v->is_bool()) return v->get_bool() ? "true" : "false";
  return printable(json::serialize(*v));
}

const json::value* field(const json::object& o, std::string_view key) {
  return o.if_contains(key);
}

// Where to connect for the configured listen address, and the Host the
// admin server accepts for it.
struct Target {
  tcp::endpoint endpoint;
  std::string host_header;
};

Target target_of(const config::Endpoint& listen) {
  auto addr = asio::ip::make_address(listen.host);  // the loader took an IP literal only
  if (addr.is_unspecified())
    addr = addr.is_v4() ? asio::ip::address(asio::ip::address_v4::loopback())
                        : asio::ip::address(asio::ip::address_v6::loopback());
  std::string host = addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string();
  return {tcp::endpoint(addr, listen.port), host + ":" + std::to_string(listen.port)};
}

struct Fetched {
  std::string error;  // empty: `status` and `body` are the reply
  int status = 0;
  std::string body;
};

std::string describe(error_code ec) {
  if (ec == beast::error::timeout)
    return "no answer within " + std::to_string(kStatusTimeout.count()) + "s";
  return ec.message();
}

// Beast's tcp_stream keeps steady_clock deadlines: a CLI, never warped.
awaitable<void> fetch(Target t, std::string token, std::chrono::steady_clock::time_point deadline,
                      Fetched& out) {
  beast::tcp_stream stream(co_await asio::this_coro::executor);
  stream.expires_at(deadline);
  auto [cec] = co_await stream.async_connect(t.endpoint, use_nothrow);
  if (cec) {
    out.error = "cannot connect: " + describe(cec);
    co_return;
  }
  http::request<http::empty_body> req{http::verb::get, "/api/pools", 11};
  req.set(http::field::host, t.host_header);
  req.set(http::field::user_agent, "smtplb-status");
  req.set(http::field::accept, "application/json");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  req.keep_alive(false);
  auto [wec, wn] = co_await http::async_write(stream, req, use_nothrow);
  if (wec) {
    out.error = "cannot send the request: " + describe(wec);
    co_return;
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kBodyLimit);
  auto [rec, rn] = co_await http::async_read(stream, buffer, parser, use_nothrow);
  if (rec) {
    out.error = "no valid reply: " + describe(rec);
    co_return;
  }
  out.status = static_cast<int>(parser.get().result_int());
  out.body = std::move(parser.get().body());
  error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

// The `error` of an admin API error body, if it has one.
std::string api_error(const std::string& body) {
  error_code ec;
  auto v = json::parse(body, ec);
  if (!ec && v.is_object())
    if (const auto* e = v.get_object().if_contains("error"); e && e->is_string())
      return printable(e->get_string());
  return printable(body.substr(0, 200));
}

}  // namespace

std::string format_pools_table(const std::string& pools_json) {
  error_code ec;
  json::value doc = json::parse(pools_json, ec);
  if (ec) throw std::runtime_error("the reply is not JSON: " + ec.message());
  const json::array* pools = nullptr;
  if (doc.is_object())
    if (const auto* p = doc.get_object().if_contains("pools")) pools = p->if_array();
  if (!pools) throw std::runtime_error("the reply has no \"pools\" array");

  using Row = std::array<std::string, 7>;
  std::vector<Row> rows;
  rows.push_back(
      {"POOL", "BACKEND", "STATE", "WEIGHT", "IN_FLIGHT", "CHECKS(ok/failed)", "REASON"});
  for (const auto& pv : *pools) {
    const auto* pool = pv.if_object();
    if (!pool) throw std::runtime_error("a pool is not a JSON object");
    std::string pool_name = text_of(field(*pool, "name"));
    const json::array* backends = nullptr;
    if (const auto* b = field(*pool, "backends")) backends = b->if_array();
    if (!backends || backends->empty()) {
      rows.push_back({pool_name, "-", "-", "-", "-", "-", "no backends"});
      continue;
    }
    for (const auto& bv : *backends) {
      const auto* b = bv.if_object();
      if (!b) throw std::runtime_error("a backend of pool " + pool_name + " is not a JSON object");
      std::string checks = "-";
      if (const auto* hc = field(*b, "health_checks"); hc && hc->is_object())
        checks = text_of(field(hc->get_object(), "ok")) + "/" +
                 text_of(field(hc->get_object(), "failed"));
      rows.push_back({pool_name, text_of(field(*b, "address")), text_of(field(*b, "state")),
                      text_of(field(*b, "weight")), text_of(field(*b, "in_flight")), checks,
                      text_of(field(*b, "reason"))});
    }
  }

  std::array<std::size_t, 7> width{};
  for (const auto& r : rows)
    for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (std::size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      // The last column (the free-text reason) is not padded.
      if (i + 1 < r.size()) line.append(width[i] - r[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

int status(const config::Config& cfg, std::ostream& out, std::ostream& err) {
  const std::string prefix = "smtplb status: ";
  if (!cfg.admin) {
    err << prefix << cfg.path
        << " has no admin section; status asks the admin API, configure it with "
           "`admin: {listen: 127.0.0.1:8025}`\n";
    return 1;
  }
  const auto& admin = *cfg.admin;
  std::string token;
  if (!admin.token_file.empty()) {
    std::ifstream in(admin.token_file);
    std::stringstream ss;
    ss << in.rdbuf();
    token = ss.str();
    // As the server reads it: the file's content without its trailing newline.
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
    if (!in || token.empty()) {
      err << prefix << "admin.token_file " << admin.token_file << ": cannot read a token from it\n";
      return 1;
    }
  }

  Target t;
  try {
    t = target_of(admin.listen);
  } catch (const std::exception&) {
    err << prefix << "admin.listen " << admin.listen.str() << " is not an IP address\n";
    return 1;
  }
  const std::string where = "the admin API at http://" + t.host_header + "/api/pools";

  asio::io_context io;
  Fetched f;
  asio::co_spawn(io, fetch(t, token, std::chrono::steady_clock::now() + kStatusTimeout, f),
                 [&](std::exception_ptr e) {
                   if (!e) return;
                   try {
                     std::rethrow_exception(e);
                   } catch (const std::exception& x) {
                     f.error = x.what();
                   }
                 });
  io.run();

  if (!f.error.empty()) {
    err << prefix << "cannot reach " << where << ": " << f.error << "\n";
    return 1;
  }
  if (f.status != 200) {
    err << prefix << where << " answered " << f.status << ": " << api_error(f.body);
    if (f.status == 401)
      err << (token.empty() ? " (the server asks for a token: set admin.token_file)"
                            : " (the token in admin.token_file is not the server's)");
    err << "\n";
    return 1;
  }
  try {
    out << format_pools_table(f.body);
  } catch (const std::exception& e) {
    err << prefix << where << ": " << e.what() << "\n";
    return 1;
  }
  out.flush();
  return 0;
}

}  // namespace smtplb::app
