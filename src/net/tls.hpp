// tls.hpp: the OpenSSL contexts smtplb uses, built once per configuration.
//
// A server context per TLS listener (certificate chain and key from PEM
// files, read again at every reload) and a client context per backend that
// speaks TLS (verification on by default, a CA file or the system's store).
// Both allow TLS 1.2 and 1.3 only, with OpenSSL's default cipher policy
// minus what is weak (no RSA key exchange, no CBC-SHA1 ciphers in 1.2), no
// compression and no renegotiation (a client-initiated renegotiation
// costs the server a handshake for free).
//
// Contexts are shared by every core: OpenSSL makes SSL_CTX safe to use from
// many threads at once once it is set up.  The client side keeps the last
// session ticket a backend gave (under a mutex: that is one lock per new
// backend connection, never per message) so the next connection resumes
// instead of paying a full handshake.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <mutex>
#include <string>

namespace smtplb::net {

// What a finished handshake agreed, for logs and the Received field.
struct TlsInfo {
  std::string version;  // e.g. TLSv1.3
  std::string cipher;   // e.g. TLS_AES_256_GCM_SHA384
  bool resumed = false;
};
TlsInfo tls_info(SSL* ssl);

// The server side of a listener.  Null with `error` set when the files do
// not load or do not match.
std::shared_ptr<boost::asio::ssl::context> make_server_tls(const std::string& certificate,
                                                           const std::string& key,
                                                           std::string& error);

// The client side towards one backend.
class ClientTls {
 public:
  // `ca`: a PEM file of trusted CAs; empty: the system's default store.
  static std::shared_ptr<ClientTls> make(bool verify, const std::string& ca, std::string& error);
  ~ClientTls();
  ClientTls(const ClientTls&) = delete;
  ClientTls& operator=(const ClientTls&) = delete;

  boost::asio::ssl::context& context() { return ctx_; }
  bool verify() const { return verify_; }
  // The session to resume, with a reference the caller passes on to
  // SSL_set_session and then drops (SSL_SESSION_free); null: none yet.
  SSL_SESSION* session_to_resume();

 private:
  ClientTls(bool verify);
  static int on_new_session(SSL* ssl, SSL_SESSION* session);

  boost::asio::ssl::context ctx_;
  bool verify_;
  std::mutex mutex_;
  SSL_SESSION* last_session_ = nullptr;
};

}  // namespace smtplb::net
