// Issue 14 (hardening): limits.ipv6_prefix, a temp_directory that cannot
// hold spill files, and an admin API open to the network without a token.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace smtplb::config {
namespace {

const std::string kBase = R"(listeners:
  - name: mx
    listen: 127.0.0.1:2525
pools:
  - name: main
    backends:
      - address: 127.0.0.1:10025
routes:
  - pool: main
)";

// Error lines as "LINE:COL: message".
std::vector<std::string> errors_of(const std::string& text) {
  auto r = load_config_text(text, "t.yaml");
  std::vector<std::string> out;
  for (const auto& e : r.errors)
    out.push_back(std::to_string(e.line) + ":" + std::to_string(e.column) + ": " + e.message);
  return out;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& e : v) s += e + "\n";
  return s;
}

// A directory of its own under the system's temporary directory, removed
// at the end.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "smtplb-cfgtest-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(ConfigHardening, Ipv6PrefixDefaultsTo64AndTakes1To128) {
  auto r = load_config_text(kBase, "t.yaml");
  ASSERT_TRUE(r.errors.empty()) << r.errors.front().str();
  EXPECT_EQ(r.config->limits.ipv6_prefix, 64);

  r = load_config_text(kBase + "limits:\n  ipv6_prefix: 48\n", "t.yaml");
  ASSERT_TRUE(r.errors.empty()) << r.errors.front().str();
  EXPECT_EQ(r.config->limits.ipv6_prefix, 48);

  for (const char* bad : {"0", "129", "-1", "/64", "sixty-four"}) {
    auto errs = errors_of(kBase + "limits:\n  ipv6_prefix: " + bad + "\n");
    ASSERT_EQ(errs.size(), 1u) << bad << "\n" << joined(errs);
    EXPECT_EQ(errs[0].rfind("11:16: limits.ipv6_prefix", 0), 0u) << errs[0];
  }
}

TEST(ConfigHardening, TempDirectoryThatCannotHoldSpillFilesIsAnErrorAtItsKey) {
  ScratchDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string missing = dir.path() + "/missing";
  const std::string file = dir.path() + "/a-file";
  std::ofstream(file) << "not a directory\n";
  struct Case {
    const char* name;
    std::string value;
    const char* why;
  };
  const Case cases[] = {
      {"missing", missing, "No such file or directory"},
      {"a file", file, "not a directory"},
  };
  for (const Case& c : cases) {
    auto errs = errors_of(kBase + "temp_directory: " + c.value + "\n");
    ASSERT_EQ(errs.size(), 1u) << c.name << "\n" << joined(errs);
    EXPECT_EQ(errs[0].rfind("10:17: temp_directory: `" + c.value + "`", 0), 0u) << errs[0];
    EXPECT_NE(errs[0].find(c.why), std::string::npos) << errs[0];
  }
  // A usable directory loads, and is left as it was.
  auto r = load_config_text(kBase + "temp_directory: " + dir.path() + "\n", "t.yaml");
  EXPECT_TRUE(r.errors.empty()) << r.errors.front().str();
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1)
      << "the probe left a file behind";
}

TEST(ConfigHardening, UnwritableTempDirectoryIsAnError) {
  if (::geteuid() == 0) GTEST_SKIP() << "root writes through directory permissions";
  ScratchDir dir;
  std::filesystem::permissions(
      dir.path(), std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
  auto errs = errors_of(kBase + "temp_directory: " + dir.path() + "\n");
  std::filesystem::permissions(dir.path(), std::filesystem::perms::owner_all);
  ASSERT_EQ(errs.size(), 1u) << joined(errs);
  EXPECT_NE(errs[0].find("temp_directory"), std::string::npos) << errs[0];
  EXPECT_NE(errs[0].find("Permission denied"), std::string::npos) << errs[0];
}

TEST(ConfigHardening, AdminOffLoopbackNeedsATokenFile) {
  ScratchDir dir;
  const std::string token = dir.path() + "/token";
  std::ofstream(token) << "s3cret\n";
  struct Case {
    const char* listen;
    bool with_token;
    bool ok;
  };
  const Case cases[] = {
      {"127.0.0.1:8025", false, true},
      {"127.0.0.2:8025", false, true},
      {"\"[::1]:8025\"", false, true},
      {"0.0.0.0:8025", false, false},
      {"\"[::]:8025\"", false, false},
      {"192.0.2.10:8025", false, false},
      {"\"[2001:db8::1]:8025\"", false, false},
      {"\"[::ffff:10.0.0.1]:8025\"", false, false},
      {"0.0.0.0:8025", true, true},
      {"\"[::]:8025\"", true, true},
  };
  for (const Case& c : cases) {
    std::string text = kBase + "admin:\n  listen: " + c.listen + "\n";
    if (c.with_token) text += "  token_file: " + token + "\n";
    auto errs = errors_of(text);
    if (c.ok) {
      EXPECT_TRUE(errs.empty()) << c.listen << "\n" << joined(errs);
      continue;
    }
    ASSERT_EQ(errs.size(), 1u) << c.listen << "\n" << joined(errs);
    EXPECT_EQ(errs[0].rfind("11:11: admin.listen:", 0), 0u) << errs[0];
    EXPECT_NE(errs[0].find("admin.token_file is required"), std::string::npos) << errs[0];
  }
}

}  // namespace
}  // namespace smtplb::config
