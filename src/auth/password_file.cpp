#include "auth/password_file.hpp"

#include <crypt.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>

namespace smtplb::auth {
namespace {

// A yescrypt setting at libxcrypt's default cost, for a file with no user
// (then there is no user whose existence could leak, but the answer still
// takes a realistic time).  Generated once with crypt_gensalt_rn("$y$", 0).
constexpr std::string_view kFallbackDummyHash = "$y$j9T$r5iyOjScS00LRClUDCpN90";

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}
bool is_control(unsigned char c) {
  return c < 0x20 || c == 0x7f;
}

std::string_view trim_blanks(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  return s;
}

// Splits "$a$b$c" into {"", "a", "b", "c"}.
std::vector<std::string_view> split_dollar(std::string_view s) {
  std::vector<std::string_view> out;
  for (;;) {
    std::size_t at = s.find('$');
    out.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

// The length of what crypt(3) appends after the salt, for the methods the
// file documents; crypt_checksalt() only looks at the method and the
// alphabet, so a truncated paste would otherwise load and never match.
struct Shape {
  std::string_view prefix;
  std::string_view name;
  std::size_t hash_chars;
};
constexpr Shape kShapes[] = {
    {"$y$", "yescrypt", 43},  // 256 bits in crypt's base64
    {"$6$", "SHA-512", 86},   // 512 bits
};

// An error message for a hash crypt_checksalt() accepted but whose shape is
// wrong, or "" when it is fine.
std::string check_shape(std::string_view hash) {
  if (hash.size() >= 4 && hash.substr(0, 2) == "$2" && hash[3] == '$') {
    // bcrypt: "$2b$" two cost digits "$", then 22 salt and 31 hash chars.
    constexpr std::size_t kBcryptLength = 7 + 22 + 31;
    bool digits = hash.size() >= 7 && std::isdigit(static_cast<unsigned char>(hash[4])) &&
                  std::isdigit(static_cast<unsigned char>(hash[5])) && hash[6] == '$';
    if (!digits) return "bcrypt hash needs a two-digit cost: $2b$NN$...";
    if (hash.size() != kBcryptLength) {
      return "bcrypt hash must be " + std::to_string(kBcryptLength) + " characters long, found " +
             std::to_string(hash.size());
    }
    return "";
  }
  for (const Shape& s : kShapes) {
    if (!hash.starts_with(s.prefix)) continue;
    auto fields = split_dollar(hash);  // "", id, [params,] salt, hash
    std::size_t min_fields = s.prefix == "$y$" ? 5 : 4;
    if (fields.size() < min_fields || fields.size() > 5) {
      return std::string(s.name) + " hash is not " +
             (s.prefix == "$y$" ? "$y$params$salt$hash" : "$6$[rounds=N$]salt$hash");
    }
    if (fields.back().size() != s.hash_chars) {
      return std::string(s.name) + " hash must end in " + std::to_string(s.hash_chars) +
             " characters after the salt, found " + std::to_string(fields.back().size());
    }
    return "";
  }
  return "";
}

std::string checksalt_message(int rc) {
  switch (rc) {
    case CRYPT_SALT_METHOD_LEGACY:
      return "hash method is legacy (DES, MD5, SHA-256...); use yescrypt, SHA-512 or bcrypt";
    case CRYPT_SALT_METHOD_DISABLED:
      return "hash method is disabled in this libxcrypt";
    case CRYPT_SALT_TOO_CHEAP:
      return "hash cost is too cheap for libxcrypt";
    default:
      return "not a crypt(3) hash libxcrypt accepts";
  }
}

}  // namespace

std::string PasswordFileError::str() const {
  std::ostringstream o;
  o << file << ":" << line << ":" << column << ": " << message;
  return o.str();
}

std::optional<std::string_view> PasswordFile::find(std::string_view user) const {
  auto it = users_.find(user);
  if (it == users_.end()) return std::nullopt;
  return std::string_view(it->second);
}

std::string_view cost_class(std::string_view hash) {
  if (hash.starts_with("$2")) {  // bcrypt: no '$' between salt and hash
    std::size_t at = hash.rfind('$');
    return at == std::string_view::npos ? hash : hash.substr(0, at + 1);
  }
  // "$id$[params$]salt$hash": drop the last two fields.
  std::size_t last = hash.rfind('$');
  if (last == std::string_view::npos || last == 0) return hash;
  std::size_t salt = hash.rfind('$', last - 1);
  return salt == std::string_view::npos ? hash : hash.substr(0, salt + 1);
}

// Builds the table; a friend of PasswordFile.
struct PasswordFileParser {
  std::string_view name;
  std::shared_ptr<PasswordFile> file = std::make_shared<PasswordFile>();
  std::unordered_map<std::string_view, int> first_line;  // user -> line, for duplicates
  std::vector<PasswordFileError> errors;

  void fail(int line, std::size_t column, std::string message) {
    errors.push_back({std::string(name), line, static_cast<int>(column), std::move(message)});
  }

  // One line without its end; `line_no` is 1-based.
  void parse_line(std::string_view line, int line_no) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::string_view rest = trim_blanks(line);
    if (rest.empty() || rest.front() == '#') return;

    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      fail(line_no, line.size() + 1, "missing ':' between user and hash");
      return;
    }
    std::string_view user = line.substr(0, colon);
    std::string_view hash = line.substr(colon + 1);
    std::size_t hash_column = colon + 2;
    if (user.empty()) {
      fail(line_no, 1, "empty user name");
      return;
    }
    for (std::size_t i = 0; i < user.size(); ++i) {
      auto c = static_cast<unsigned char>(user[i]);
      if (is_blank(user[i]) || is_control(c)) {
        fail(line_no, i + 1, "white space or control character in user name");
        return;
      }
    }
    if (hash.empty()) {
      fail(line_no, hash_column, "empty hash (an account without a password is refused)");
      return;
    }
    for (std::size_t i = 0; i < hash.size(); ++i) {
      auto c = static_cast<unsigned char>(hash[i]);
      if (hash[i] == ':') {
        fail(line_no, hash_column + i,
             "unexpected ':' in hash (one user:hash per line, not shadow)");
        return;
      }
      if (is_blank(hash[i]) || is_control(c) || c >= 0x80) {
        fail(line_no, hash_column + i, "unexpected character in hash");
        return;
      }
    }
    if (hash.size() >= CRYPT_OUTPUT_SIZE) {
      fail(line_no, hash_column, "hash longer than crypt(3) ever writes");
      return;
    }
    // crypt_checksalt() would call a plain-text password a DES setting.
    if (hash.front() != '$') {
      fail(line_no, hash_column, "hash has no $method$ prefix (plain text, or refused DES)");
      return;
    }
    // crypt_checksalt() wants a C string; the hash is at most 383 octets.
    std::string hash_z(hash);
    if (int rc = crypt_checksalt(hash_z.c_str()); rc != CRYPT_SALT_OK) {
      fail(line_no, hash_column, checksalt_message(rc));
      return;
    }
    if (std::string shape = check_shape(hash); !shape.empty()) {
      fail(line_no, hash_column, std::move(shape));
      return;
    }
    auto [it, inserted] = file->users_.try_emplace(std::string(user), std::move(hash_z));
    if (!inserted) {
      fail(line_no, 1,
           "duplicate user \"" + std::string(user) + "\" (first on line " +
               std::to_string(first_line[it->first]) + ")");
      return;
    }
    first_line[it->first] = line_no;
  }

  // The hash of the first user (in file order) of the most common class.
  void choose_dummy() {
    std::map<std::string_view, std::pair<int, int>> classes;  // class -> (count, first line)
    std::map<int, std::string_view> by_line;                  // line -> hash
    for (const auto& [user, hash] : file->users_) {
      int line = first_line[user];
      by_line[line] = hash;
      auto [it, inserted] = classes.try_emplace(cost_class(hash), 0, line);
      it->second.first++;
      it->second.second = std::min(it->second.second, line);
    }
    std::pair<int, int> best{0, 0};  // the winner's (count, first line)
    for (const auto& [cls, stats] : classes) {
      if (stats.first > best.first || (stats.first == best.first && stats.second < best.second)) {
        best = stats;
      }
    }
    file->dummy_hash_ =
        best.first > 0 ? std::string(by_line[best.second]) : std::string(kFallbackDummyHash);
  }
};

PasswordFileLoad parse_password_file(std::string_view text, std::string_view name) {
  PasswordFileParser p;
  p.name = name;
  int line_no = 0;
  while (!text.empty()) {
    ++line_no;
    std::size_t end = text.find('\n');
    p.parse_line(text.substr(0, end), line_no);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
  }
  if (!p.errors.empty()) return {nullptr, std::move(p.errors)};
  p.choose_dummy();
  return {std::move(p.file), {}};
}

PasswordFileLoad load_password_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {nullptr, {{path, 0, 0, "cannot open the password file"}}};
  std::string text;
  char buf[64 * 1024];
  while (text.size() <= kMaxPasswordFileBytes && in.read(buf, sizeof buf).gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) return {nullptr, {{path, 0, 0, "cannot read the password file"}}};
  if (text.size() > kMaxPasswordFileBytes) {
    return {nullptr,
            {{path, 0, 0,
              "password file larger than " + std::to_string(kMaxPasswordFileBytes) + " octets"}}};
  }
  return parse_password_file(text, path);
}

}  // namespace smtplb::auth
