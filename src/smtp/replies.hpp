// replies.hpp: every reply smtplb composes itself, in one table.
//
// The code and enhanced code are the public contract (DESIGN.md, "Replies
// the client sees"); the text is free.  Handlers pick a reply from here
// rather than spelling codes inline, so the contract lives in one place.
#pragma once

#include <string_view>

#include "smtp/reply.hpp"

namespace smtplb::smtp::replies {

inline Reply banner(std::string_view host) {
  return make_reply(220, "", std::string(host) + " ESMTP smtplb");
}
inline Reply closing(std::string_view host) {
  return make_reply(221, "2.0.0", std::string(host) + " closing connection");
}
inline Reply ok() {
  return make_reply(250, "2.0.0", "OK");
}
inline Reply sender_ok() {
  return make_reply(250, "2.1.0", "Sender OK");
}
inline Reply reset_ok() {
  return make_reply(250, "2.0.0", "Reset OK");
}
inline Reply noop_ok() {
  return make_reply(250, "2.0.0", "OK");
}
inline Reply vrfy() {
  return make_reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery");
}
inline Reply help() {
  return make_reply(214, "2.0.0", "See RFC 5321; smtplb relays mail");
}
inline Reply start_data() {
  return make_reply(354, "", "End data with <CR><LF>.<CR><LF>");
}

// 4xx
inline Reply shutting_down(std::string_view host) {
  return make_reply(421, "4.3.2", std::string(host) + " service shutting down");
}
inline Reply too_many_errors() {
  return make_reply(421, "4.7.0", "Too many errors, closing");
}
inline Reply forbidden_protocol() {
  return make_reply(421, "4.7.0", "This is an SMTP server, closing");
}
inline Reply too_many_connections() {
  return make_reply(421, "4.7.0", "Too many connections, try later");
}
inline Reply timeout() {
  return make_reply(421, "4.4.2", "Timeout exceeded, closing");
}
inline Reply too_many_recipients() {
  return make_reply(452, "4.5.3", "Too many recipients");
}
inline Reply other_pool() {
  return make_reply(452, "4.5.3", "Recipient routed elsewhere; send it in a new transaction");
}
inline Reply other_domain() {
  return make_reply(452, "4.5.3", "One recipient domain per transaction; send it in a new one");
}
inline Reply dns_temporary_failure() {
  return make_reply(451, "4.4.3",
                    "Cannot resolve the recipient domain's mail hosts now, try later");
}
inline Reply no_mail_host() {
  return make_reply(451, "4.4.1", "No usable mail host for the recipient domain, try again later");
}
inline Reply domain_not_found() {
  return make_reply(550, "5.1.2", "The recipient domain does not exist");
}
inline Reply null_mx() {
  return make_reply(556, "5.1.10", "The recipient domain accepts no mail (null MX)");
}
inline Reply no_backend() {
  return make_reply(451, "4.4.1", "No backend could take the mail, try again later");
}
// Every backend tried stalled or garbled its reply for this one address
// (slow recipient verification, a reply it breaks for that address): the
// recipient alone is deferred; the others of the transaction go on.
inline Reply recipient_unverified() {
  return make_reply(451, "4.4.2",
                    "No usable answer from the backends for this recipient, try again later");
}
inline Reply params_need_ehlo() {
  return make_reply(555, "5.5.4", "MAIL parameters need EHLO, not HELO");
}
// Every backend of the pool lacks SMTPUTF8 (RFC 6531 3.4: never downgraded).
inline Reply no_smtputf8_backend() {
  return make_reply(553, "5.6.7", "No backend supports SMTPUTF8, which this message needs");
}
// BODY=8BITMIME, no backend offers 8BITMIME, and the content was not 7-bit.
inline Reply eight_bit_undeliverable() {
  return make_reply(554, "5.6.3", "8-bit content, and no backend supports 8BITMIME");
}
inline Reply backend_deadline() {
  return make_reply(451, "4.4.7", "Relay deadline passed, try again later");
}
inline Reply pool_full() {
  return make_reply(451, "4.4.5", "All backends are at their limits, try again later");
}
inline Reply no_capable_backend() {
  return make_reply(451, "4.4.0", "No backend supports what this message needs, try later");
}
inline Reply message_rate_exceeded() {
  return make_reply(451, "4.7.1", "Message rate exceeded, try again later");
}
// The message could not be kept for a replay: memory past
// limits.replay_memory(_total) and the spill file could not be written.
inline Reply no_replay_storage() {
  return make_reply(452, "4.3.1", "Insufficient system storage, try again later");
}
inline Reply local_error() {
  return make_reply(451, "4.3.0", "Local error, try again later");
}

// 5xx
inline Reply line_too_long() {
  return make_reply(500, "5.5.2", "Line too long");
}
inline Reply unknown_command() {
  return make_reply(500, "5.5.2", "Command not recognized");
}
inline Reply bad_line_ending() {
  return make_reply(500, "5.5.2", "Bare CR, LF or NUL in command");
}
inline Reply syntax(std::string_view what) {
  return make_reply(501, "5.5.4", std::string("Syntax error: ") + std::string(what));
}
inline Reply bad_sequence(std::string_view what) {
  return make_reply(503, "5.5.1", std::string("Bad sequence of commands: ") + std::string(what));
}
inline Reply auth_required() {
  return make_reply(530, "5.7.0", "Authentication required");
}
inline Reply message_too_big() {
  return make_reply(552, "5.3.4", "Message size exceeds fixed limit");
}
inline Reply relay_denied() {
  return make_reply(554, "5.7.1", "Relay access denied");
}
inline Reply no_valid_recipients() {
  return make_reply(554, "5.5.1", "No valid recipients");
}
inline Reply bare_line_ending_in_data() {
  return make_reply(554, "5.6.0", "Bare CR or LF in message data refused");
}
// A message line over limits.max_line_length: the content's fault, not
// the command's (RFC 3463 5.6.0), after the final dot like the other
// refusals of the data.
inline Reply text_line_too_long() {
  return make_reply(554, "5.6.0", "Message line too long");
}
inline Reply unknown_parameter(std::string_view name) {
  return make_reply(555, "5.5.4", "Unsupported parameter " + std::string(name));
}
inline Reply utf8_needs_smtputf8() {
  return make_reply(553, "5.6.7", "Non-ASCII address needs SMTPUTF8");
}

// AUTH (RFC 4954 6) and STARTTLS (RFC 3207 4); SECURITY.md 6.
inline Reply auth_succeeded() {
  return make_reply(235, "2.7.0", "Authentication successful");
}
inline Reply auth_failed() {
  return make_reply(535, "5.7.8", "Authentication credentials invalid");
}
inline Reply auth_bad_base64() {
  return make_reply(501, "5.5.2", "Cannot decode the base64 response");
}
inline Reply auth_cancelled() {
  return make_reply(501, "5.7.0", "Authentication cancelled");
}
inline Reply auth_line_too_long() {
  return make_reply(500, "5.5.6", "Authentication exchange line is too long");
}
inline Reply auth_needs_tls() {
  return make_reply(538, "5.7.11", "Encryption required for requested authentication mechanism");
}
inline Reply auth_unknown_mechanism() {
  return make_reply(504, "5.5.4", "Unrecognized authentication mechanism");
}
inline Reply auth_already_done() {
  return make_reply(503, "5.5.1", "Already authenticated");
}
inline Reply auth_too_many_failures() {
  return make_reply(421, "4.7.0", "Too many failed authentications, closing");
}
inline Reply auth_temporary_failure() {
  return make_reply(454, "4.7.0", "Temporary authentication failure, try again later");
}
inline Reply tls_ready() {
  return make_reply(220, "2.0.0", "Ready to start TLS");
}
inline Reply tls_not_available() {
  return make_reply(454, "4.7.0", "TLS not available");
}
inline Reply tls_required() {
  return make_reply(530, "5.7.0", "Must issue a STARTTLS command first");
}

}  // namespace smtplb::smtp::replies
