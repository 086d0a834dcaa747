// frontend_data.cpp: the DATA phase, from the backend's 354 to the reply
// after the final dot.  Its own file because it is the session's one long
// read: the message is decoded as it arrives (smtp/data_decoder.hpp: only
// CR LF . CR LF ends it, a bare CR or LF is refused or normalised), relayed
// in chunks, bounded by size, line length and time, and it ends either in
// the backend's verdict or in a refusal after the final dot (the data is
// read to its end, so the session stays usable: DESIGN.md).  The session
// machine let DATA through only after an accepted RCPT, so a backend
// session is there; end_transaction() tells the machine it is over.
#include <algorithm>

#include "log/log.hpp"
#include "relay/buffer_cache.hpp"
#include "relay/relay_counters.hpp"
#include "server/frontend_session.hpp"
#include "smtp/data_decoder.hpp"
#include "smtp/data_encoder.hpp"
#include "smtp/replies.hpp"

namespace smtplb::server {

namespace replies = smtp::replies;

awaitable<smtp::Reply> FrontendSession::on_data(bool& close) {
  smtp::Reply r = co_await relay().data();
  if (r.code != 354) {
    log_transaction(r, "refused_at_data");
    co_await end_transaction();
    co_return r;
  }
  queue(r);
  if (!co_await flush()) {
    relay().abort();
    close = true;
    co_return smtp::Reply{};
  }
  co_await relay().data_chunk(received_header());
  smtp::Reply last;
  const DataEnd end = co_await read_message(last);
  if (end == DataEnd::kAborted) {
    close = true;
    co_return last;
  }
  co_return co_await finish_message(end, close);
}

std::string FrontendSession::received_header() const {
  relay::ReceivedInfo ri;
  ri.helo = helo_name_;
  ri.client_ip = client_ip_;
  ri.hostname = cfg_->hostname;
  ri.protocol = protocol_name();
  if (tls_ && !tls_->version.empty()) ri.tls = tls_->version + " with cipher " + tls_->cipher;
  ri.when = std::chrono::system_clock::now();
  return txn_->received_field(std::move(ri));
}

awaitable<FrontendSession::DataEnd> FrontendSession::read_message(smtp::Reply& reply) {
  DataEnd refusal = DataEnd::kComplete;
  const bool normalize = cfg_->limits.bare_line_endings == config::BareLineEndings::kNormalize;
  // Strict input (the default, bare line endings refused) is decoded
  // straight to its wire form, one pass and one copy per byte; only
  // `normalize` needs the content on its own, to re-encode it.
  smtp::DataDecoder decoder(
      normalize ? smtp::DataDecoder::Output::kContent : smtp::DataDecoder::Output::kWire,
      cfg_->limits.max_line_length);
  smtp::DataEncoder encoder;
  std::string content;
  relay::CachedBuffer wire_buffer;  // reused across messages: no regrowth
  std::string& wire = *wire_buffer;
  std::string& decoded = normalize ? content : wire;
  const auto data_deadline = Clock::now() + cfg_->timeouts.client_data_total;

  // Bytes the client pipelined behind DATA are the start of the message;
  // after them, each read is decoded where it landed (the core's scratch
  // area) before the next wait, without a copy of its own.
  const std::string pipelined(reader_.pending());
  std::string_view chunk = pipelined;
  reader_.clear();
  for (;;) {
    if (!chunk.empty()) {
      auto res = decoder.feed(chunk, decoded);
      if (res.done) reader_.append(chunk.substr(res.consumed));
      if (refusal == DataEnd::kComplete) {
        if (decoder.content_size() > cfg_->limits.max_message_size)
          refusal = DataEnd::kTooBig;
        else if (decoder.saw_bare_line_ending() && !normalize)
          refusal = DataEnd::kBareLineEnding;
        else if (decoder.saw_long_line())
          refusal = DataEnd::kLongLine;
        if (refusal != DataEnd::kComplete) {
          relay().abort();
        } else {
          if (normalize) encoder.encode(content, wire);
          co_await relay().data_chunk(wire);
        }
      }
      content.clear();
      wire.clear();
      if (res.done) co_return refusal;
    }
    if (forced_) {
      relay().abort();
      log_transaction(smtp::Reply{}, "shutdown");
      reply = replies::shutting_down(cfg_->hostname);
      co_return DataEnd::kAborted;
    }
    auto left = std::chrono::duration_cast<Duration>(data_deadline - Clock::now());
    auto [ec, n] = co_await read_input(
        read_bound(std::max(Duration(1), std::min(cfg_->timeouts.client_data, left))));
    if (ec) {
      reply = data_read_failed(ec);
      co_return DataEnd::kAborted;
    }
    chunk = std::string_view(input(), n);
  }
}

smtp::Reply FrontendSession::data_read_failed(error_code ec) {
  // Client gone or too slow in mid-DATA: nothing is delivered.
  relay().abort();
  log_transaction(smtp::Reply{}, ec == asio::error::timed_out           ? "client_timeout"
                                 : ec == asio::error::operation_aborted ? "shutdown"
                                                                        : "client_gone");
  if (ec == asio::error::timed_out) {
    core_.shared().sessions.count(Clock::now() >= started_ + cfg_->timeouts.client_session
                                      ? server::SessionCounters::Limit::kSessionTime
                                      : server::SessionCounters::Limit::kDataTime);
    return replies::timeout();
  }
  if (ec == asio::error::operation_aborted) return replies::shutting_down(cfg_->hostname);
  return smtp::Reply{};
}

awaitable<smtp::Reply> FrontendSession::finish_message(DataEnd end, bool& close) {
  smtp::Reply final_reply;
  const char* result = "refused";
  switch (end) {
    case DataEnd::kTooBig:
      final_reply = replies::message_too_big();
      break;
    case DataEnd::kBareLineEnding:
      final_reply = replies::bare_line_ending_in_data();
      break;
    case DataEnd::kLongLine:
      final_reply = replies::text_line_too_long();
      break;
    case DataEnd::kAborted:
      break;  // cannot happen: on_data() ended the session
    case DataEnd::kComplete: {
      smtp::Reply backend_reply = co_await relay().finish();
      if (backend_reply.positive()) {
        final_reply = smtp::make_reply(250, "2.0.0", "OK queued as " + txn_->id());
        result = "delivered";
      } else if (relay().client_gone()) {
        // No replay was made for a client that hung up: nobody hears this.
        final_reply = backend_reply;
        result = "client_gone";
        close = true;
      } else {
        final_reply = backend_reply;
        result = backend_reply.permanent() ? "rejected" : "deferred";
      }
      break;
    }
  }
  // Counted whatever the outcome: after a 451 the client sends it again.
  const bool counted = relay().possible_duplicate();
  if (counted) relay::counters().possible_duplicates.fetch_add(1, std::memory_order_relaxed);
  log_transaction(final_reply, result);
  const bool delivered = std::string_view(result) == "delivered";
  const log::Scope scope = txn_->scope();
  co_await end_transaction();
  if (!delivered) co_return final_reply;
  // A backend has the message; a client that never gets this 250 will
  // send it again: that copy is a possible duplicate, counted as such.
  queue(final_reply);
  if (!co_await flush()) {
    if (!counted) relay::counters().possible_duplicates.fetch_add(1, std::memory_order_relaxed);
    log_reply_lost(scope, final_reply);
    close = true;
  }
  co_return smtp::Reply{};
}

}  // namespace smtplb::server
