#include "auth/password_file.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace smtplb::auth {
namespace {

// Hashes of "pw" made once with crypt_gensalt_rn + crypt_rn at low cost.
const std::string kYescrypt =
    "$y$j75$M/WP4YqS3qZGtDcCqMZOk.$ruMaKfWKa.cxuK4rcL28XTrZ//M3A9xGKkPJmPx6hv0";
const std::string kSha512 =
    "$6$rounds=1000$.pno3R9zJvGm9nvY$sCQU4ajrpozwxmtyg9YWib5p9AmmUjY2gEQ/"
    "4YjuyH00piXZDc8dQ4LwQwYkmf6QVurZ.qZcehvCJLn5FhYCP.";
const std::string kBcrypt2b = "$2b$04$m4DoZIGe.dp27Uy.9bds4uvcAoNkYGOAuvWmiDhtmuCVQfLfBmTye";
const std::string kBcrypt2y = "$2y$04$cnZzWZaQXMb1NrSbwJO0qeUBYbeH/w6zaJUKBaxWL/Zd4ZqnkPB.C";

// "line:column: message" for each error, without the file name.
std::vector<std::string> errors_of(const PasswordFileLoad& load) {
  std::vector<std::string> out;
  for (const auto& e : load.errors) {
    out.push_back(std::to_string(e.line) + ":" + std::to_string(e.column) + ": " + e.message);
  }
  return out;
}

TEST(PasswordFile, LoadsUsersSkippingCommentsAndBlankLines) {
  std::string text = "# smtplb users\n\n   \nalice:" + kYescrypt + "\n  # indented comment\n" +
                     "bob:" + kSha512 + "\r\n" + "carol:" + kBcrypt2b + "\n" + "dave:" + kBcrypt2y;
  auto load = parse_password_file(text, "passwd");
  ASSERT_TRUE(load.errors.empty()) << errors_of(load).at(0);
  ASSERT_TRUE(load.file);
  EXPECT_EQ(load.file->size(), 4u);
  EXPECT_EQ(load.file->find("alice"), kYescrypt);
  EXPECT_EQ(load.file->find("bob"), kSha512) << "a CRLF line end is not part of the hash";
  EXPECT_EQ(load.file->find("carol"), kBcrypt2b);
  EXPECT_EQ(load.file->find("dave"), kBcrypt2y) << "no newline at the end of the file";
}

TEST(PasswordFile, UsersCompareExactly) {
  auto load = parse_password_file("Alice:" + kYescrypt + "\nalice@example.net:" + kSha512, "p");
  ASSERT_TRUE(load.file);
  const struct {
    const char* user;
    bool found;
  } cases[] = {
      {"Alice", true},
      {"alice", false},
      {"ALICE", false},
      {"Alice ", false},
      {"alice@example.net", true},
      {"alice@EXAMPLE.NET", false},
      {"", false},
  };
  for (const auto& c : cases) EXPECT_EQ(load.file->find(c.user).has_value(), c.found) << c.user;
}

TEST(PasswordFile, EachBadLineIsReportedWithLineAndColumn) {
  struct Case {
    const char* name;
    std::string text;
    std::string want;  // "line:column: message"
  };
  const std::string y = kYescrypt;
  const std::string after_y = std::to_string(7 + y.size());  // the column after "alice:" + y
  const std::vector<Case> cases = {
      {"missing colon", "alice\n", "1:6: missing ':' between user and hash"},
      {"missing colon after comments", "# users\n\n  \nbob\n",
       "4:4: missing ':' between user and hash"},
      {"empty user", ":" + y, "1:1: empty user name"},
      {"duplicate user", "alice:" + y + "\nbob:" + y + "\nalice:" + kSha512,
       "3:1: duplicate user \"alice\" (first on line 1)"},
      {"white space in user", "al ice:" + y, "1:3: white space or control character in user name"},
      {"leading blank before user", " alice:" + y,
       "1:1: white space or control character in user name"},
      {"empty hash", "alice:", "1:7: empty hash (an account without a password is refused)"},
      {"locked account", "alice:!" + y,
       "1:7: hash has no $method$ prefix (plain text, or refused DES)"},
      {"star", "alice:*", "1:7: hash has no $method$ prefix (plain text, or refused DES)"},
      {"plain text password", "alice:secret",
       "1:7: hash has no $method$ prefix (plain text, or refused DES)"},
      {"DES", "alice:saHW9GdxihkGQ",
       "1:7: hash has no $method$ prefix (plain text, or refused DES)"},
      {"unknown method", "alice:$9$abc$def", "1:7: not a crypt(3) hash libxcrypt accepts"},
      {"legacy MD5", "alice:$1$saltsalt$qjQrX9ySJGK8VYU6Pj4cU/",
       "1:7: hash method is legacy (DES, MD5, SHA-256...); use yescrypt, SHA-512 or bcrypt"},
      {"shadow line", "alice:" + y + ":19000:0:99999:7:::",
       "1:" + after_y + ": unexpected ':' in hash (one user:hash per line, not shadow)"},
      {"trailing blank", "alice:" + y + " ", "1:" + after_y + ": unexpected character in hash"},
      {"truncated SHA-512", "alice:" + kSha512.substr(0, kSha512.size() - 1),
       "1:7: SHA-512 hash must end in 86 characters after the salt, found 85"},
      {"truncated yescrypt", "alice:" + y.substr(0, y.size() - 2),
       "1:7: yescrypt hash must end in 43 characters after the salt, found 41"},
      {"yescrypt without salt", "alice:$y$j75$", "1:7: yescrypt hash is not $y$params$salt$hash"},
      {"truncated bcrypt", "alice:" + kBcrypt2b.substr(0, 40),
       "1:7: bcrypt hash must be 60 characters long, found 40"},
      {"bcrypt without cost", "alice:$2b$x$" + kBcrypt2b.substr(7),
       "1:7: bcrypt hash needs a two-digit cost: $2b$NN$..."},
  };
  for (const Case& c : cases) {
    auto load = parse_password_file(c.text, "passwd");
    EXPECT_FALSE(load.file) << c.name;
    ASSERT_EQ(load.errors.size(), 1u) << c.name;
    EXPECT_EQ(errors_of(load).at(0), c.want) << c.name;
  }
}

TEST(PasswordFile, ReportsEveryBadLineAndNamesTheFile) {
  auto load = parse_password_file("alice\n:x\nbob:" + kSha512 + "\nbob:" + kSha512, "users.pw");
  EXPECT_FALSE(load.file);
  EXPECT_EQ(errors_of(load), (std::vector<std::string>{
                                 "1:6: missing ':' between user and hash",
                                 "2:1: empty user name",
                                 "4:1: duplicate user \"bob\" (first on line 3)",
                             }));
  EXPECT_EQ(load.errors.at(0).str(), "users.pw:1:6: missing ':' between user and hash");
}

TEST(PasswordFile, CostClassIsTheMethodAndCostWithoutSaltOrHash) {
  const struct {
    std::string hash;
    std::string want;
  } cases[] = {
      {kYescrypt, "$y$j75$"},
      {kSha512, "$6$rounds=1000$"},
      {"$6$saltsalt$" + std::string(86, 'a'), "$6$"},
      {kBcrypt2b, "$2b$04$"},
      {kBcrypt2y, "$2y$04$"},
  };
  for (const auto& c : cases) EXPECT_EQ(cost_class(c.hash), c.want) << c.hash;
}

TEST(PasswordFile, DummyHashIsOfTheMostCommonCostClass) {
  struct Case {
    const char* name;
    std::string text;
    std::string want;
  };
  const std::string sha_other = "$6$rounds=1000$abcdefgh$" + std::string(86, 'b');
  const std::vector<Case> cases = {
      {"one user", "alice:" + kBcrypt2b, kBcrypt2b},
      {"the majority wins", "a:" + kYescrypt + "\nb:" + kSha512 + "\nc:" + sha_other, kSha512},
      {"a tie goes to the first line", "a:" + kBcrypt2y + "\nb:" + kYescrypt, kBcrypt2y},
  };
  for (const Case& c : cases) {
    auto load = parse_password_file(c.text, "p");
    ASSERT_TRUE(load.file) << c.name;
    EXPECT_EQ(load.file->dummy_hash(), c.want) << c.name;
  }
  auto empty = parse_password_file("# nobody yet\n", "p");
  ASSERT_TRUE(empty.file);
  EXPECT_EQ(empty.file->size(), 0u);
  EXPECT_TRUE(empty.file->dummy_hash().starts_with("$y$j9T$")) << "libxcrypt's default cost";
}

TEST(PasswordFile, LoadsFromAPathAndReportsAMissingFile) {
  std::string path = testing::TempDir() + "smtplb_password_file_test.pw";
  {
    std::ofstream out(path, std::ios::binary);
    out << "alice:" << kYescrypt << "\n";
  }
  auto load = load_password_file(path);
  std::remove(path.c_str());
  ASSERT_TRUE(load.file);
  EXPECT_EQ(load.file->find("alice"), kYescrypt);

  auto missing = load_password_file(path);
  EXPECT_FALSE(missing.file);
  ASSERT_EQ(missing.errors.size(), 1u);
  EXPECT_EQ(missing.errors[0].str(), path + ":0:0: cannot open the password file");
}

}  // namespace
}  // namespace smtplb::auth
