// SECURITY.md 2, "Logs": anything a peer sent is escaped, so CR, LF and
// other controls can never forge a log line or a key=value pair.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <sstream>

#include "log/log.hpp"

namespace smtplb::log {
namespace {

TEST(LogEscape, ControlsQuotesBackslashAnd8BitBecomeHex) {
  struct Case {
    std::string in, out;
  };
  const Case cases[] = {
      {"plain text", "plain text"},
      {"a\r\nevent=transaction", "a\\x0d\\x0aevent=transaction"},
      {std::string("nul\0byte", 8), "nul\\x00byte"},
      {"tab\there", "tab\\x09here"},
      {"quote\"back\\slash", "quote\\x22back\\x5cslash"},
      {"\x1b[31mred", "\\x1b[31mred"},
      {"caf\xc3\xa9", "caf\\xc3\\xa9"},
      {"\x7f", "\\x7f"},
  };
  for (const auto& c : cases) EXPECT_EQ(escape(c.in), c.out) << c.in;
}

TEST(LogEscape, ARecordWithAForgedLineStaysOneLine) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  auto logger = std::make_shared<spdlog::logger>("escape-test", sink);
  logger->set_pattern("%v");
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(logger);
  Record("transaction")
      .add("helo", "evil\r\n2026-01-01 info event=transaction result=delivered")
      .emit();
  spdlog::set_default_logger(previous);
  const std::string line = out.str();
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.find('\r'), std::string::npos) << line;
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line, ended by the sink's own LF: " << line;
  EXPECT_NE(line.find("evil\\x0d\\x0a2026"), std::string::npos) << line;
}

}  // namespace
}  // namespace smtplb::log
