#include "log/log.hpp"

#include <spdlog/sinks/stdout_sinks.h>

#include <boost/json.hpp>
#include <charconv>

namespace smtplb::log {

namespace {
Format g_format = Format::kText;
}

void init(Format f, spdlog::level::level_enum level) {
  g_format = f;
  auto logger = spdlog::stderr_logger_mt("smtplb");
  if (f == Format::kJson)
    logger->set_pattern("%v");
  else
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %l %v");
  logger->set_level(level);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

Format format() {
  return g_format;
}

std::string escape(std::string_view s) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

void Record::emit(spdlog::level::level_enum level) const {
  if (!spdlog::default_logger()->should_log(level)) return;
  std::string line;
  if (g_format == Format::kJson) {
    boost::json::object o;
    o["ts"] = static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count());
    o["level"] = spdlog::level::to_string_view(level).data();
    for (const auto& f : fields_) {
      if (f.raw) {
        long long n = 0;
        auto [p, ec] = std::from_chars(f.value.data(), f.value.data() + f.value.size(), n);
        if (ec == std::errc() && p == f.value.data() + f.value.size())
          o[f.key] = n;
        else
          o[f.key] = f.value;
      } else {
        // JSON escaping handles controls; keep bytes printable for grep too.
        o[f.key] = escape(f.value);
      }
    }
    line = boost::json::serialize(o);
  } else {
    for (const auto& f : fields_) {
      if (!line.empty()) line += ' ';
      line += f.key;
      line += '=';
      std::string v = f.raw ? f.value : escape(f.value);
      bool quote = v.empty() || v.find(' ') != std::string::npos;
      if (quote) line += '"';
      line += v;
      if (quote) line += '"';
    }
  }
  spdlog::log(level, "{}", line);
}

}  // namespace smtplb::log
