#include "net/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

namespace smtplb::net {

namespace ssl = boost::asio::ssl;

namespace {

// TLS 1.2's suites with forward secrecy and AEAD only (TLS 1.3's are all
// of that already): Mozilla's "intermediate" set, which every MTA in use
// today speaks.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384";

std::string openssl_error(const boost::system::error_code& ec) {
  std::string text = ec.message();
  if (unsigned long e = ERR_get_error(); e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    text = buf;
  }
  ERR_clear_error();
  return text;
}

void apply_policy(ssl::context& ctx) {
  SSL_CTX* c = ctx.native_handle();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(
      c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_cipher_list(c, kTls12Ciphers);
  // Asio may hand OpenSSL a buffer again after a short write; allow it.
  SSL_CTX_set_mode(c, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
}

// Where a client context finds its ClientTls.  Not SSL_CTX's app data:
// Asio keeps its verify callback there and deletes it with the context.
int client_tls_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

}  // namespace

TlsInfo tls_info(SSL* s) {
  TlsInfo info;
  if (!s) return info;
  info.version = SSL_get_version(s);
  if (const char* c = SSL_get_cipher_name(s)) info.cipher = c;
  info.resumed = SSL_session_reused(s) == 1;
  return info;
}

std::shared_ptr<ssl::context> make_server_tls(const std::string& certificate,
                                              const std::string& key, std::string& error) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  apply_policy(*ctx);
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(certificate, ec);
  if (ec) {
    error = "cannot load certificate `" + certificate + "`: " + openssl_error(ec);
    return nullptr;
  }
  ctx->use_private_key_file(key, ssl::context::pem, ec);
  if (ec) {
    error = "cannot load key `" + key + "`: " + openssl_error(ec);
    return nullptr;
  }
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    ERR_clear_error();
    error = "key `" + key + "` does not match certificate `" + certificate + "`";
    return nullptr;
  }
  // Resumption by session id within one process (tickets work too).
  static const unsigned char kSessionContext[] = "smtplb";
  SSL_CTX_set_session_id_context(ctx->native_handle(), kSessionContext, sizeof kSessionContext - 1);
  return ctx;
}

ClientTls::ClientTls(bool verify) : ctx_(ssl::context::tls_client), verify_(verify) {}

ClientTls::~ClientTls() {
  if (last_session_) SSL_SESSION_free(last_session_);
}

std::shared_ptr<ClientTls> ClientTls::make(bool verify, const std::string& ca, std::string& error) {
  std::shared_ptr<ClientTls> t(new ClientTls(verify));
  apply_policy(t->ctx_);
  boost::system::error_code ec;
  if (!ca.empty()) {
    t->ctx_.load_verify_file(ca, ec);
    if (ec) {
      error = "cannot load CA file `" + ca + "`: " + openssl_error(ec);
      return nullptr;
    }
  } else {
    t->ctx_.set_default_verify_paths(ec);
    if (ec) {
      error = "cannot load the system's CA store: " + openssl_error(ec);
      return nullptr;
    }
  }
  t->ctx_.set_verify_mode(verify ? ssl::verify_peer : ssl::verify_none);
  // Sessions reach us through the callback only (TLS 1.3 tickets arrive
  // after the handshake); OpenSSL's own client cache would never be used.
  SSL_CTX* c = t->ctx_.native_handle();
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_set_ex_data(c, client_tls_index(), t.get());
  SSL_CTX_sess_set_new_cb(c, &ClientTls::on_new_session);
  return t;
}

int ClientTls::on_new_session(SSL* s, SSL_SESSION* session) {
  auto* self = static_cast<ClientTls*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(s), client_tls_index()));
  if (!self || SSL_SESSION_is_resumable(session) != 1) return 0;
  // A copy: OpenSSL marks the connection's own session not resumable when
  // that connection ends without close_notify (a backend that just closes).
  SSL_SESSION* copy = SSL_SESSION_dup(session);
  if (!copy) return 0;
  std::lock_guard lock(self->mutex_);
  if (self->last_session_) SSL_SESSION_free(self->last_session_);
  self->last_session_ = copy;
  return 0;  // OpenSSL keeps its reference to `session`
}

SSL_SESSION* ClientTls::session_to_resume() {
  std::lock_guard lock(mutex_);
  if (!last_session_) return nullptr;
  SSL_SESSION_up_ref(last_session_);
  return last_session_;
}

}  // namespace smtplb::net
