// password_file.hpp: the AUTH password file, parsed into an immutable table.
//
// Format: one `user:hash` per line, the hash a crypt(3) string as libxcrypt
// writes it (yescrypt `$y$`, SHA-512 `$6$`, bcrypt `$2b$`/`$2y$`; other
// methods crypt_checksalt() calls OK are taken as they are).  Blank lines
// and lines whose first non-blank character is `#` are skipped; a CRLF line
// end is taken as LF.  User names compare exactly (case-sensitive, no
// normalisation), may not hold white space or control characters, and
// cannot start with `#`.
//
// Loading is all or nothing: any bad line and there is no table, only the
// errors, each with its 1-based line and column (columns count octets), so
// a reload (SIGHUP) with a typo keeps the table in use.  The table is
// shared read-only (std::shared_ptr<const PasswordFile>); a reload swaps
// the pointer whole and verifications already running keep the old one.
//
// Refused on purpose: methods libxcrypt calls legacy (DES, MD5, SHA-256
// `$5$`...) and locked or empty entries (`!`, `*`, ``): an account nobody
// can use does not belong in this file.  No I/O but load_password_file().
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace smtplb::auth {

// The file is read whole; larger than this is an operator mistake (some
// 100000 users take a few MiB).
inline constexpr std::size_t kMaxPasswordFileBytes = 16 * 1024 * 1024;

struct PasswordFileError {
  std::string file;
  int line = 0;    // 1-based; 0: the file as a whole (unreadable, too big)
  int column = 0;  // 1-based, in octets; 0 with line 0
  std::string message;
  std::string str() const;  // "file:line:column: message"
};

class PasswordFile {
 public:
  // The stored hash of `user`, or nullopt for an unknown user.  The view
  // lives as long as this table.
  std::optional<std::string_view> find(std::string_view user) const;

  // What an unknown user's password is hashed against, so that the answer
  // takes as long as for a user that exists (CVE-2016-6210).  It is the
  // hash of a user in the file's most common method and cost (its output
  // is thrown away), or a fixed yescrypt setting when the file is empty.
  std::string_view dummy_hash() const { return dummy_hash_; }

  std::size_t size() const { return users_.size(); }

 private:
  friend struct PasswordFileParser;

  // Heterogeneous lookup: find() takes a string_view without copying.
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::string, Hash, std::equal_to<>> users_;
  std::string dummy_hash_;
};

struct PasswordFileLoad {
  std::shared_ptr<const PasswordFile> file;  // null when errors is not empty
  std::vector<PasswordFileError> errors;
};

// Parses the text of a password file; `name` only labels the errors.
PasswordFileLoad parse_password_file(std::string_view text, std::string_view name);
// Reads `path` (at most kMaxPasswordFileBytes) and parses it.
PasswordFileLoad load_password_file(const std::string& path);

// "$6$rounds=5000$" for "$6$rounds=5000$salt$hash", "$2b$12$" for bcrypt:
// the method and cost without salt and hash.  Hashes with the same class
// take the same time to check.
std::string_view cost_class(std::string_view hash);

}  // namespace smtplb::auth
