#include "smtp/sasl.hpp"

#include <cstdint>
#include <utility>

#include "smtp/ascii.hpp"
#include "smtp/replies.hpp"

namespace smtplb::smtp::sasl {

namespace {

constexpr std::string_view kBase64Alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// LOGIN's two prompts, base64 of "Username:" and "Password:": the texts
// every LOGIN client expects (draft-murchison-sasl-login 2; some clients
// match them literally).
constexpr std::string_view kLoginUsernamePrompt = "VXNlcm5hbWU6";
constexpr std::string_view kLoginPasswordPrompt = "UGFzc3dvcmQ6";

int sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// The name is a password-file key and goes to the logs: no control
// characters (a CR or LF would forge log lines), bounded.
bool usable_username(std::string_view name) {
  if (name.empty() || name.size() > kMaxUsername) return false;
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

// RFC 4616 2: passwd = 1*SAFE, SAFE being any UTF-8 but NUL.  A NUL would
// also cut the C string crypt(3) gets, so "secret\0junk" would pass for
// "secret".  The length cap comes before any hashing (kMaxPassword).
bool usable_password(std::string_view password) {
  return !password.empty() && password.size() <= kMaxPassword &&
         password.find('\0') == std::string_view::npos;
}

}  // namespace

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  // "=" may only be the last character, or the last two; anywhere else it
  // fails the alphabet check below ("=AAA", "A=AA", "AA=A", "====").
  std::size_t pad = 0;
  if (!text.empty() && text.back() == '=') pad = text[text.size() - 2] == '=' ? 2 : 1;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  std::uint32_t bits = 0;  // undecoded bits, the low `nbits` of them
  int nbits = 0;
  for (char c : text.substr(0, text.size() - pad)) {
    int v = sextet(c);
    if (v < 0) return std::nullopt;
    bits = bits << 6 | static_cast<std::uint32_t>(v);
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      out.push_back(static_cast<char>(bits >> nbits & 0xff));
      bits &= (1u << nbits) - 1;
    }
  }
  // RFC 4648 3.5: the pad bits of the last group must be zero, or two texts
  // would decode to the same bytes ("QQ==" and "QR==" both to "A").
  if (bits != 0) return std::nullopt;
  return out;
}

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    std::uint32_t group = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16 |
                          static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1]))
                              << 8 |
                          static_cast<unsigned char>(bytes[i + 2]);
    out.push_back(kBase64Alphabet[group >> 18 & 0x3f]);
    out.push_back(kBase64Alphabet[group >> 12 & 0x3f]);
    out.push_back(kBase64Alphabet[group >> 6 & 0x3f]);
    out.push_back(kBase64Alphabet[group & 0x3f]);
  }
  const std::size_t left = bytes.size() - i;
  if (left > 0) {
    std::uint32_t group = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (left == 2)
      group |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    out.push_back(kBase64Alphabet[group >> 18 & 0x3f]);
    out.push_back(kBase64Alphabet[group >> 12 & 0x3f]);
    out.push_back(left == 2 ? kBase64Alphabet[group >> 6 & 0x3f] : '=');
    out.push_back('=');
  }
  return out;
}

const char* to_string(Mechanism m) {
  switch (m) {
    case Mechanism::kPlain:
      return "PLAIN";
    case Mechanism::kLogin:
      return "LOGIN";
  }
  return "?";
}

std::optional<Mechanism> parse_mechanism(std::string_view name) {
  if (iequals(name, "PLAIN")) return Mechanism::kPlain;
  if (iequals(name, "LOGIN")) return Mechanism::kLogin;
  return std::nullopt;
}

Step AuthExchange::start(std::string_view mechanism,
                         std::optional<std::string_view> initial_response) {
  state_ = State::kIdle;
  username_.clear();
  std::optional<Mechanism> mech = parse_mechanism(mechanism);
  if (!mech) return finish(replies::auth_unknown_mechanism());
  if (!initial_response) {
    if (*mech == Mechanism::kPlain) {
      // RFC 4616 has the client speak first: an empty challenge invites it.
      state_ = State::kPlainResponse;
      return Challenge{};
    }
    state_ = State::kLoginUsername;
    return Challenge{std::string(kLoginUsernamePrompt)};
  }
  if (initial_response->size() > kMaxAuthLine) return finish(replies::auth_line_too_long());
  // RFC 4954 4: a zero-length initial response is sent as "="; an empty
  // argument is no base64 at all (the grammar's base64 is non-empty).
  std::optional<std::string> decoded;
  if (*initial_response == "=")
    decoded.emplace();
  else if (!initial_response->empty())
    decoded = base64_decode(*initial_response);
  if (!decoded) return finish(replies::auth_bad_base64());
  // LOGIN's initial response, where clients send one, is the user name.
  return *mech == Mechanism::kPlain ? plain(*decoded) : login_username(*decoded);
}

Step AuthExchange::respond(std::string_view client_line) {
  if (state_ == State::kIdle || state_ == State::kDone)
    return replies::bad_sequence("no authentication in progress");
  if (client_line.size() > kMaxAuthLine) return finish(replies::auth_line_too_long());
  // RFC 4954 4: "*" cancels; the server "MUST reject the AUTH command by
  // sending a 501 reply".
  if (client_line == "*") return finish(replies::auth_cancelled());
  std::optional<std::string> decoded = base64_decode(client_line);
  if (!decoded) return finish(replies::auth_bad_base64());
  switch (state_) {
    case State::kPlainResponse:
      return plain(*decoded);
    case State::kLoginUsername:
      return login_username(*decoded);
    case State::kLoginPassword:
      return login_password(*decoded);
    case State::kIdle:
    case State::kDone:
      break;
  }
  return finish(replies::bad_sequence("no authentication in progress"));
}

// RFC 4616 2: message = [authzid] NUL authcid NUL passwd.
Step AuthExchange::plain(std::string_view message) {
  std::size_t first = message.find('\0');
  std::size_t second = first == std::string_view::npos ? first : message.find('\0', first + 1);
  if (second == std::string_view::npos || message.find('\0', second + 1) != std::string_view::npos)
    return finish(replies::auth_failed());
  std::string_view authzid = message.substr(0, first);
  std::string_view authcid = message.substr(first + 1, second - first - 1);
  std::string_view password = message.substr(second + 1);
  // Acting as another user (RFC 4616 2, authzid) is a right nobody here
  // has: an authzid is accepted only when it names the user itself.
  if (!authzid.empty() && authzid != authcid) return finish(replies::auth_failed());
  if (!usable_username(authcid) || !usable_password(password))
    return finish(replies::auth_failed());
  return finish(Credentials{Mechanism::kPlain, std::string(authcid), std::string(password)});
}

Step AuthExchange::login_username(std::string_view username) {
  // Refused at once: a password for a name that cannot exist is not asked.
  if (!usable_username(username)) return finish(replies::auth_failed());
  username_ = std::string(username);
  state_ = State::kLoginPassword;
  return Challenge{std::string(kLoginPasswordPrompt)};
}

Step AuthExchange::login_password(std::string_view password) {
  if (!usable_password(password)) return finish(replies::auth_failed());
  return finish(Credentials{Mechanism::kLogin, std::move(username_), std::string(password)});
}

Step AuthExchange::finish(Step step) {
  state_ = State::kDone;
  username_.clear();
  return step;
}

}  // namespace smtplb::smtp::sasl
