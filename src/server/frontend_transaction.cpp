// frontend_transaction.cpp: the transaction's glue between the client and
// the relay: MAIL's envelope, RCPT's relay policy and routing (DESIGN.md
// data path, step 2) and the backend's answer, and the transaction's end.
// The session machine has already said whether the command may run (the
// sequence, TLS, AUTH, SIZE, max_recipients); what is here needs the
// configuration, DNS or a backend, and reports what came of it to the
// machine through dispatch().
#include "log/log.hpp"
#include "server/frontend_session.hpp"
#include "server/policy.hpp"
#include "smtp/replies.hpp"

namespace smtplb::server {

namespace replies = smtp::replies;

void FrontendSession::adopt_current_view() {
  // A new transaction uses the configuration of the moment: a reload after
  // this session began takes effect here.  Nothing of the previous
  // transaction (txn_: its pool, its relay) points into the old view any
  // more.
  const auto& current = core_.view();
  if (current == view_ || txn_) return;
  const config::Listener* l = current->cfg().find_listener(listener_->name);
  if (!l) return;  // cannot happen: a reload keeps every listener
  view_ = current;
  cfg_ = &view_->cfg();
  listener_ = l;
  refresh_trust();
}

smtp::Reply FrontendSession::on_mail(const smtp::Command& cmd) {
  // The message rate is counted here, where its limiter lives, and last:
  // a MAIL the machine refused costs the client no message.
  if (!trusted_ && !view_->gen->message_rate->allow(ip_, Clock::now())) {
    core_.shared().sessions.count(server::SessionCounters::Limit::kMessageRate);
    machine_.mail_result(false);
    return replies::message_rate_exceeded();
  }
  ++tx_count_;
  txn_ = std::make_unique<relay::Transaction>(
      log::Scope{id(), relay::transaction_id(id(), tx_count_)}, envelope_for(cmd), Clock::now());
  machine_.mail_result(true);
  return replies::sender_ok();
}

relay::Envelope FrontendSession::envelope_for(const smtp::Command& cmd) {
  relay::Envelope env;
  env.sender = cmd.path;
  env.params = cmd.mail;
  // AUTH= from a client that did not authenticate is dropped (RFC 4954 5):
  // the relay rebuilds MAIL from these values and never sends it on.
  env.params.auth_given = false;
  env.needs_smtputf8 = cmd.mail.smtputf8;
  env.needs_8bitmime = cmd.mail.body == smtp::Body::k8BitMime;
  // A PROXY header that named no client (v2 LOCAL, v1 UNKNOWN) leaves ip_
  // at the balancer's address; the backend is told the client is unknown
  // (XCLIENT [UNAVAILABLE], PROXY LOCAL), never that address, which it may
  // trust.
  if (!no_client_) {
    env.client.ip = ip_;
    env.client.port = client_port_;
  }
  if (local_port_ == 0 && cfg_->proxy_identity_used) {
    // Only PROXY headers to backends need it: no getsockname otherwise.
    error_code ec;
    auto local = sock_.socket().local_endpoint(ec);
    if (!ec) {
      local_ip_ = net::IpAddress(local);
      local_port_ = local.port();
    }
  }
  env.client.local_ip = local_ip_;
  env.client.local_port = local_port_;
  env.client.helo = helo_name_;
  env.client.proto = machine_.greeting() == smtp::Greeting::kEhlo ? "ESMTP" : "SMTP";
  env.client.login = auth_user_;
  return env;
}

awaitable<std::optional<smtp::Reply>> FrontendSession::recipient_hosts(const config::Pool& p,
                                                                       const std::string& domain) {
  dns::Lookup* lookup = core_.lookup();
  if (!lookup) co_return replies::dns_temporary_failure();
  dns::MxTarget t = co_await lookup->mx_target(domain);
  std::optional<smtp::Reply> refusal;
  std::shared_ptr<upstream::PoolRuntime> hosts;
  switch (t.kind) {
    case dns::MxTarget::Kind::kHosts:
      hosts = core_.recipient_pool(view_->gen->cfg, p, domain, t);
      if (!hosts) refusal = replies::no_mail_host();  // only our own listeners
      break;
    case dns::MxTarget::Kind::kNxDomain:
      refusal = replies::domain_not_found();
      break;
    case dns::MxTarget::Kind::kNullMx:
      refusal = replies::null_mx();
      break;
    case dns::MxTarget::Kind::kNoHosts:
      refusal = replies::no_mail_host();
      break;
    case dns::MxTarget::Kind::kTempFail:
    case dns::MxTarget::Kind::kCancelled:
      refusal = replies::dns_temporary_failure();
      break;
  }
  if (refusal) {
    log::Record("mx_lookup", txn_->scope())
        .add("pool", p.name)
        .add("domain", domain)
        .add("result", dns::to_string(t.kind))
        .add("detail", t.detail)
        .add("reply", refusal->summary())
        .emit(spdlog::level::warn);
    co_return refusal;
  }
  txn_->set_recipient_hosts(std::move(hosts), domain);
  if (t.stale)
    log::Record("mx_lookup", txn_->scope())
        .add("pool", p.name)
        .add("domain", domain)
        .add("result", "stale")
        .add("detail", "DNS refresh failed; using the last good answer")
        .emit(spdlog::level::warn);
  co_return std::nullopt;
}

smtp::Reply FrontendSession::refuse_rcpt(const smtp::Path& rcpt, smtp::Reply reply) {
  txn_->refuse(rcpt);
  return reply;
}

awaitable<smtp::Reply> FrontendSession::on_rcpt(const smtp::Command& cmd) {
  const smtp::Mailbox& rcpt = cmd.path.mailbox;
  if (!txn_->envelope().needs_smtputf8 && rcpt.has_non_ascii())
    co_return refuse_rcpt(cmd.path, replies::utf8_needs_smtputf8());
  // An authenticated client may relay, like a trusted one.
  if (check_recipient(*cfg_, listener_->role, trusted_ || machine_.authenticated(), rcpt) ==
      Verdict::kRelayDenied) {
    log::Record("relay_denied", txn_->scope())
        .add("client", client_ip_)
        .add("rcpt", rcpt.str())
        .emit();
    co_return refuse_rcpt(cmd.path, replies::relay_denied());
  }
  std::string domain = routing_domain(*cfg_, rcpt);
  std::string sender_domain = domain_key(txn_->envelope().sender.mailbox.domain);
  const config::Route* route = view_->router.match({listener_->name, domain, sender_domain, ip_});
  upstream::PoolRuntime* pool = route ? view_->pool(route->pool) : nullptr;
  if (!pool)
    co_return refuse_rcpt(cmd.path, smtp::make_reply(550, "5.7.1", "No route for this recipient"));
  upstream::PoolRuntime* pinned = txn_->pool();
  if (pool->cfg->mx == config::MxMode::kRecipient) {
    if (pinned && pinned->cfg != pool->cfg) co_return refuse_rcpt(cmd.path, replies::other_pool());
    if (pinned) {
      // The transaction's hosts are its first recipient domain's.
      if (domain != txn_->recipient_domain())
        co_return refuse_rcpt(cmd.path, replies::other_domain());
      pool = pinned;
    } else {
      auto reply = co_await recipient_hosts(*pool->cfg, domain);
      if (reply) co_return refuse_rcpt(cmd.path, std::move(*reply));
      pool = txn_->recipient_hosts();
    }
  }
  if (pinned && pool != pinned) co_return refuse_rcpt(cmd.path, replies::other_pool());
  if (!pinned) {
    relay::RelayTransaction& relay = txn_->start_relay(core_.io().get_executor(), *cfg_, *pool);
    relay.set_client_gone_check([this] { return sock_.peek() == net::TimedSocket::Peek::kClosed; });
  }
  // The relay records the recipient as accepted or refused.
  co_return co_await relay().rcpt(cmd.path);
}

awaitable<void> FrontendSession::end_transaction() {
  // A transaction that ends before its data (every RCPT refused, RSET,
  // QUIT, the client gone) is logged too, once: an operator looking for a
  // message must find what became of it.  Every RCPT tried is in one of
  // the two lists.
  if (txn_ && !txn_->logged && txn_->tried_recipients())
    log_transaction(smtp::Reply{}, "abandoned");
  if (relaying()) co_await relay().release();
  txn_.reset();
  machine_.transaction_ended();
}

}  // namespace smtplb::server
