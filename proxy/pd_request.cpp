#include "proxy/pd_request.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <array>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <cerrno>

#include "protocol/json_error.hpp"
#include "protocol/prefill_result.hpp"
#include "protocol/recompute_splicer.hpp"
#include "protocol/request_id.hpp"
#include "protocol/request_splicer.hpp"
#include "protocol/response_rewriter.hpp"
#include "proxy/json_response.hpp"
#include "proxy/upstream_exchange.hpp"

namespace glm::proxy {
namespace {

using protocol::response_rewriter;

// Relay buffer: one read from the decoder is written to the client before the next read, so a
// slow client slows the decoder instead of growing memory. It lives in every open stream's
// coroutine frame; 4 KiB (nginx's smallest proxy buffer) holds a dozen vLLM chunks, and an event
// larger than a read is reassembled by the framer.
constexpr std::size_t relay_buffer_bytes = 4 * 1024;
// An SSE event split over reads is held until it is complete; no real event is near this.
constexpr std::size_t max_event_bytes = 4 << 20;
// The reference's default when the client gives no max_tokens.
constexpr std::int64_t default_max_tokens = 16;
// A preempted request is re-prefilled at most this many times before the stream is ended.
constexpr std::int64_t max_recomputes = 8;

}  // namespace

std::string_view pd_request::error_kind(const attempt& a) {
  if (!a.ec) return "status";
  if (a.ec == beast::error::timeout) return "timeout";
  if (a.ec == net::error::connection_refused) return "refused";
  if (a.ec == net::error::connection_reset || a.ec == http::error::end_of_stream ||
      a.ec == net::error::eof) {
    return "reset";
  }
  return "other";
}

namespace {

bool retryable(const error_code& ec, unsigned status) {
  // A 400 is the request's own fault: every instance would refuse it the same way.
  return ec || status != 400;
}

// A 4xx is the request's fault, which any instance would answer alike: it must not eject one.
bool instance_fault(const error_code& ec, unsigned status) {
  return ec || status / 100 != 4;
}

}  // namespace

pd_request::pd_request(proxy_context& ctx, beast::tcp_stream& client,
                       http::request<http::string_body>& req, std::string_view target,
                       access_record& record)
    : ctx_(ctx),
      client_(client),
      req_(req),
      target_(target),
      record_(record),
      writer_(client, seconds(ctx.cfg.client_write_timeout)),
      framer_(max_event_bytes) {}

net::awaitable<bool> pd_request::run() {
  using namespace net::experimental::awaitable_operators;
  auto outcome = co_await (serve() || watch_client());
  if (outcome.index() == 1) {
    ctx_.stats.client_disconnect();
    if (status_ == 0) status_ = 499;  // nginx's "client closed request"
    record_.ending = "client_gone";
    spdlog::info("[{}] client disconnected; upstream closed and load released", request_id_);
    co_return false;
  }
  co_return std::get<0>(outcome);
}

net::awaitable<void> pd_request::watch_client() {
  // Wait for readability without consuming anything: a request in progress has already been read,
  // so the socket becomes readable only when the client closes (or pipelines its next request).
  auto& socket = client_.socket();
  auto [ec] = co_await socket.async_wait(tcp::socket::wait_read, use_nothrow);
  if (ec == net::error::operation_aborted) co_return;  // serve() finished first
  if (!ec) {
    char byte;
    ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))) {
      // Pipelined bytes: the client is still there. Stay out of the way until serve() ends.
      net::steady_timer forever(co_await net::this_coro::executor,
                                std::chrono::steady_clock::time_point::max());
      co_await forever.async_wait(use_nothrow);
      co_return;
    }
  }
  client_gone_ = true;
  if (active_ != nullptr) active_->close();
}

net::awaitable<bool> pd_request::serve() {
  // Cancellation (the client left) must surface as error codes, not exceptions.
  co_await net::this_coro::throw_if_cancelled(false);
  keep_alive_ = req_.keep_alive();
  // The client's id, when it is safe to put in headers and logs, lets it follow its request
  // through both backends' logs; otherwise a fresh one.
  if (auto it = req_.find("X-Request-Id");
      it != req_.end() && protocol::is_sane_request_id(it->value())) {
    request_id_ = it->value();
  } else {
    request_id_ = protocol::make_request_id();
  }
  record_.id = request_id_;
  record_.prompt_bytes = req_.body().size();
  if (auto error = protocol::request_splicer::parse(req_.body(), parsed_)) {
    record_.ending = "rejected";
    co_await send(json_error_response(400, *error, keep_alive_));
    co_return answer_keeps_connection_;
  }
  lease_ = ctx_.lb.begin_request(req_.body().size());

  const protocol::client_request* body = &parsed_;
  for (;;) {
    auto kv_transfer_params = co_await prefill(*body);
    if (!kv_transfer_params) break;
    if (co_await decode(*body, *kv_transfer_params) == decode_outcome::answered) break;
    if (!prepare_recompute()) {
      record_.ending = "upstream_error";
      co_await end_stream_with_error("the decoder preempted the request and it cannot be resumed");
      break;
    }
    body = &next_parsed_;
  }
  co_return answer_keeps_connection_;
}

net::awaitable<pd_request::attempt> pd_request::start(upstream_exchange& up,
                                                      const balancer::backend_address& to,
                                                      std::chrono::steady_clock::duration wait) {
  attempt a;
  active_ = &up;
  const std::string host = to.to_string();
  const upstream_exchange::post head{target_, host, request_id_, ctx_.cfg.backend_api_key};
  auto how = upstream_exchange::connection::pooled;
  for (;;) {
    if (client_gone_) {
      a.ec = net::error::operation_aborted;
      co_return a;
    }
    a.ec = co_await up.connect(to, seconds(ctx_.cfg.connect_timeout), how);
    if (a.ec) co_return a;
    a.ec = co_await up.send(head, pieces_, wait);
    if (!a.ec) a.ec = co_await up.read_header(wait);
    // A kept-alive connection the backend closed before reading the request: that is no failure
    // of the backend, and the request was not seen, so it goes again once on a new connection.
    // A timeout is not that: the backend may be working on it.
    if (a.ec && up.reused() && !up.answer_started() && a.ec != beast::error::timeout) {
      how = upstream_exchange::connection::fresh;
      continue;
    }
    break;
  }
  if (!a.ec) a.status = up.status();
  co_return a;
}

net::awaitable<bool> pd_request::retry_pause(int attempt_number) {
  // The reference's backoff: retry_delay * 2^(k-1) before retry k.
  double delay =
      ctx_.cfg.retry_delay * static_cast<double>(1ull << std::min(attempt_number - 1, 30));
  net::steady_timer timer(co_await net::this_coro::executor, seconds(delay));
  co_await timer.async_wait(use_nothrow);
  co_return !client_gone_;
}

net::awaitable<std::optional<std::string>> pd_request::prefill(
    const protocol::client_request& request) {
  const int attempts = std::max(1, ctx_.cfg.max_retries);
  for (int k = 1;; ++k) {
    auto to = lease_.choose_prefiller();
    if (!to) {
      record_.ending = "no_instance";
      co_await answer_no_instance(balancer::role::prefill);
      co_return std::nullopt;
    }
    record_.prefiller = to->to_string();
    upstream_exchange up(co_await net::this_coro::executor);
    auto attempt_start = std::chrono::steady_clock::now();
    auto deadline = attempt_start + seconds(ctx_.cfg.prefill_timeout);
    protocol::request_splicer::prefill_pieces(request, pieces_);
    attempt a = co_await start(up, *to, seconds(ctx_.cfg.prefill_timeout));
    std::string answer;
    if (!a.ec) a.ec = co_await up.read_body(answer, ctx_.cfg.max_body_bytes, deadline);
    if (!a.ec) up.recycle(*to);
    active_ = nullptr;
    if (client_gone_) co_return std::nullopt;
    if (!a.ec && a.status / 100 == 2) {
      ctx_.stats.prefill_duration(
          to->to_string(),
          std::chrono::duration<double>(std::chrono::steady_clock::now() - attempt_start).count());
      protocol::prefill_result result;
      if (auto error = protocol::prefill_result::parse(answer, result)) {
        record_.ending = "upstream_error";
        lease_.prefill_failed();
        co_await answer_error(502, {},
                              "prefill instance " + to->to_string() + " answered: " + *error);
        co_return std::nullopt;
      }
      cached_tokens_ = result.cached_tokens;
      lease_.prefill_succeeded();
      co_return std::move(result.kv_transfer_params);
    }
    spdlog::warn("[{}] prefill attempt {}/{} on {} failed: {}", request_id_, k, attempts,
                 to->to_string(), a.ec ? a.ec.message() : "HTTP " + std::to_string(a.status));
    ctx_.stats.upstream_error(balancer::role::prefill, to->to_string(), error_kind(a));
    lease_.prefill_failed(instance_fault(a.ec, a.status));
    if (k >= attempts || !retryable(a.ec, a.status)) {
      co_await answer_failure("prefill", *to, a, answer);
      co_return std::nullopt;
    }
    ctx_.stats.retry(balancer::role::prefill);
    if (!co_await retry_pause(k)) co_return std::nullopt;
  }
}

net::awaitable<pd_request::decode_outcome> pd_request::decode(
    const protocol::client_request& request, std::string_view kv_transfer_params) {
  const int attempts = std::max(1, ctx_.cfg.max_retries);
  for (int k = 1;; ++k) {
    auto to = lease_.choose_decoder();
    if (!to) {
      record_.ending = "no_instance";
      co_await answer_no_instance(balancer::role::decode);
      co_return decode_outcome::answered;
    }
    record_.decoder = to->to_string();
    upstream_exchange up(co_await net::this_coro::executor);
    protocol::request_splicer::decode_pieces(request, kv_transfer_params, pieces_);
    attempt a = co_await start(up, *to, seconds(ctx_.cfg.stream_idle_timeout));
    if (!a.ec && a.status / 100 == 2) {
      lease_.decode_succeeded();
      auto outcome = parsed_.stream ? co_await relay_stream(up, *to) : co_await relay_body(up, *to);
      active_ = nullptr;
      co_return outcome;
    }
    std::string answer;
    if (!a.ec) {
      // The error body is for the client; a broken one still leaves the status to report.
      auto deadline = std::chrono::steady_clock::now() + seconds(ctx_.cfg.stream_idle_timeout);
      if (!co_await up.read_body(answer, std::min<std::size_t>(ctx_.cfg.max_body_bytes, 1 << 20),
                                 deadline)) {
        up.recycle(*to);
      }
    }
    active_ = nullptr;
    if (client_gone_) co_return decode_outcome::answered;
    spdlog::warn("[{}] decode attempt {}/{} on {} failed: {}", request_id_, k, attempts,
                 to->to_string(), a.ec ? a.ec.message() : "HTTP " + std::to_string(a.status));
    ctx_.stats.upstream_error(balancer::role::decode, to->to_string(), error_kind(a));
    lease_.decode_failed(instance_fault(a.ec, a.status));
    if (k >= attempts || !retryable(a.ec, a.status)) {
      co_await answer_failure("decode", *to, a, answer);
      co_return decode_outcome::answered;
    }
    ctx_.stats.retry(balancer::role::decode);
    if (!co_await retry_pause(k)) co_return decode_outcome::answered;
  }
}

net::awaitable<pd_request::decode_outcome> pd_request::relay_stream(
    upstream_exchange& up, const balancer::backend_address& from) {
  if (!writer_.header_sent()) {
    http::response<http::empty_body> res{http::status::ok, 11};
    res.set(http::field::server, "glm-proxy");
    res.set(http::field::content_type, "text/event-stream; charset=utf-8");
    res.set(http::field::cache_control, "no-cache");
    res.set("X-Request-Id", request_id_);
    res.keep_alive(keep_alive_);
    status_ = 200;
    if (co_await writer_.write_header(res)) {
      up.close();
      answer_keeps_connection_ = false;
      co_return decode_outcome::answered;
    }
  }
  framer_ = protocol::sse_framer(max_event_bytes);
  recompute_pending_ = false;
  std::array<char, relay_buffer_bytes> buffer;
  for (;;) {
    auto [ec, n] =
        co_await up.read_some(buffer.data(), buffer.size(), seconds(ctx_.cfg.stream_idle_timeout));
    if (n > 0) {
      // The decoder has the KV cache now: the prefiller's share of this request is done.
      lease_.release_prefill();
      note_decode_write();
      events_in_read_ = 0;
      bool written = co_await forward_events({buffer.data(), n});
      ctx_.stats.stream_events(events_in_read_);
      record_.events += events_in_read_;
      if (!written) {
        // The watcher counts a client it saw leave; count only a failure it did not see.
        if (!client_gone_) ctx_.stats.client_disconnect();
        record_.ending = "client_gone";
        up.close();  // never leave vLLM generating for a client that is gone
        answer_keeps_connection_ = false;
        co_return decode_outcome::answered;
      }
      if (recompute_pending_) break;  // the rest of this stream is only its [DONE]
    }
    if (ec) {
      up.close();
      if (client_gone_) co_return decode_outcome::answered;
      std::string message =
          ec == beast::error::timeout
              ? "decode instance sent nothing for " +
                    std::to_string(static_cast<long>(ctx_.cfg.stream_idle_timeout)) + " s"
          : ec == http::error::body_limit ? "decode instance sent an oversized SSE event"
                                          : "decode instance failed mid-stream: " + ec.message();
      spdlog::warn("[{}] {}", request_id_, message);
      record_.ending = ec == beast::error::timeout ? "timeout" : "upstream_error";
      co_await end_stream_with_error(message);
      co_return decode_outcome::answered;
    }
    if (n == 0) break;
  }
  if (recompute_pending_) {
    up.close();
    co_return decode_outcome::recompute;
  }
  up.recycle(from);  // read to its end
  // A stream that ended without a final blank line: its last bytes still belong to the client.
  if (!framer_.pending().empty() && co_await writer_.write_chunk(framer_.pending())) {
    answer_keeps_connection_ = false;
    co_return decode_outcome::answered;
  }
  answer_keeps_connection_ = !co_await writer_.write_last() && keep_alive_;
  co_return decode_outcome::answered;
}

net::awaitable<bool> pd_request::forward_events(std::string_view piece) {
  segments_.clear();
  owned_.clear();
  bool framed = framer_.feed(piece, [&](std::string_view event) { classify_event(event, piece); });
  if (!framed) {
    // An event past max_event_bytes: pass everything through unframed rather than buffer more.
    segments_.clear();
    owned_.assign(framer_.pending());
    segments_.push_back({true, 0, owned_.size()});
    framer_ = protocol::sse_framer(max_event_bytes);
  }
  buffers_.clear();
  for (const segment& s : segments_) {
    const char* base = s.owned ? owned_.data() : piece.data();
    buffers_.push_back(net::buffer(base + s.offset, s.size));
  }
  co_return !co_await writer_.write_chunk(buffers_);
}

void pd_request::note_decode_write() {
  auto now = std::chrono::steady_clock::now();
  if (last_write_ == std::chrono::steady_clock::time_point{}) {
    double ttft = std::chrono::duration<double>(now - started_).count();
    ctx_.stats.time_to_first_token(ttft);
    record_.ttft_seconds = ttft;
  } else {
    ctx_.stats.inter_token(std::chrono::duration<double>(now - last_write_).count());
  }
  last_write_ = now;
}

void pd_request::classify_event(std::string_view event, std::string_view piece) {
  if (recompute_pending_) return;  // only the preempted stream's [DONE] follows
  ++events_in_read_;
  std::string_view data = response_rewriter::event_data(event);
  if (!data.empty() && data.front() == '{') {
    ++chunks_seen_;
    if (event.find("recomputed") != std::string_view::npos &&
        response_rewriter::is_recomputed(data)) {
      // Hidden from the client: the stream goes on after a re-prefill.
      recompute_pending_ = true;
      return;
    }
    response_rewriter::append_choice_text(data, generated_);
    if (parsed_.include_usage && event.find("\"usage\"") != std::string_view::npos) {
      if (auto rewritten = response_rewriter::event_with_cached_tokens(event, cached_tokens_)) {
        std::size_t offset = owned_.size();
        owned_ += *rewritten;
        segments_.push_back({true, offset, rewritten->size()});
        return;
      }
    }
  }
  emit(event, piece);
}

void pd_request::emit(std::string_view bytes, std::string_view piece) {
  bool in_piece = bytes.data() >= piece.data() && bytes.data() + bytes.size() <= piece.end();
  if (!in_piece) {
    // From the framer's own buffer (an event that spanned reads): copy, it is reused.
    std::size_t offset = owned_.size();
    owned_.append(bytes);
    segments_.push_back({true, offset, bytes.size()});
    return;
  }
  std::size_t offset = static_cast<std::size_t>(bytes.data() - piece.data());
  if (!segments_.empty() && !segments_.back().owned &&
      segments_.back().offset + segments_.back().size == offset) {
    segments_.back().size += bytes.size();  // consecutive untouched events: one range
  } else {
    segments_.push_back({false, offset, bytes.size()});
  }
}

bool pd_request::prepare_recompute() {
  ++recomputes_;
  ctx_.stats.recompute();
  if (recomputes_ > max_recomputes) return false;
  // The reference's rule: the original budget less the chunks seen (the recomputed one counted),
  // plus the recomputes so far.
  std::int64_t budget =
      parsed_.max_tokens.value_or(default_max_tokens) - chunks_seen_ + recomputes_;
  if (budget < 1) budget = 1;
  auto body = protocol::recompute_splicer::body(parsed_, generated_, budget);
  if (!body) return false;
  next_body_ = std::move(*body);
  if (protocol::request_splicer::parse(next_body_, next_parsed_)) return false;
  spdlog::info("[{}] decoder preempted the request; re-prefilling with {} more tokens", request_id_,
               budget);
  return true;
}

net::awaitable<pd_request::decode_outcome> pd_request::relay_body(
    upstream_exchange& up, const balancer::backend_address& from) {
  std::string body;
  auto deadline = std::chrono::steady_clock::now() + seconds(ctx_.cfg.stream_idle_timeout);
  auto ec = co_await up.read_body(body, ctx_.cfg.max_body_bytes, deadline);
  lease_.release_prefill();
  if (ec) {
    up.close();
    if (client_gone_) co_return decode_outcome::answered;
    unsigned status = ec == beast::error::timeout ? 504 : 502;
    record_.ending = ec == beast::error::timeout ? "timeout" : "upstream_error";
    co_await answer_error(status, {}, "decode instance failed while answering: " + ec.message());
    co_return decode_outcome::answered;
  }
  up.recycle(from);  // read to its end
  if (body.find("recomputed") != std::string::npos && response_rewriter::is_recomputed(body)) {
    // Without a stream the client gets one body: keep this part's text for the final answer.
    // The budget rule counts chunks; a whole body is its completion tokens plus the recomputed
    // chunk.
    chunks_seen_ += response_rewriter::completion_tokens(body).value_or(0) + 1;
    response_rewriter::append_choice_text(body, generated_);
    co_return decode_outcome::recompute;
  }
  if (auto rewritten = response_rewriter::with_cached_tokens(body, cached_tokens_)) {
    body = std::move(*rewritten);
  }
  if (!generated_.empty()) {
    if (auto whole = response_rewriter::with_choice_text_prefix(body, generated_)) {
      body = std::move(*whole);
    }
  }
  co_await send(json_response(up.status(), std::move(body), keep_alive_));
  co_return decode_outcome::answered;
}

net::awaitable<void> pd_request::answer_failure(const char* role,
                                                const balancer::backend_address& to,
                                                const attempt& a, const std::string& body) {
  record_.ending = a.ec == beast::error::timeout ? "timeout" : "upstream_error";
  if (a.ec) {
    bool timed_out = a.ec == beast::error::timeout;
    std::string message = std::string(role) + " instance " + to.to_string() +
                          (timed_out ? " timed out: " : " failed: ") + a.ec.message();
    co_await answer_error(timed_out ? 504 : 502, {}, message);
    co_return;
  }
  co_await answer_error(a.status, protocol::json_error::wrap_upstream(body, a.status),
                        std::string(role) + " instance " + to.to_string() + " answered HTTP " +
                            std::to_string(a.status));
}

net::awaitable<void> pd_request::answer_error(unsigned status, std::string body,
                                              std::string_view message) {
  if (writer_.header_sent()) {
    // The client already has a 200 and part of a stream (a recompute round failed).
    co_await end_stream_with_error(message);
    co_return;
  }
  if (body.empty()) {
    co_await send(json_error_response(status, message, keep_alive_));
  } else {
    co_await send(json_response(status, std::move(body), keep_alive_));
  }
}

net::awaitable<void> pd_request::answer_no_instance(balancer::role kind) {
  ctx_.stats.refused("no_instance");
  std::string message = "no " + std::string(balancer::to_string(kind)) + " instance is available";
  if (writer_.header_sent()) {
    co_await end_stream_with_error(message);
    co_return;
  }
  // Every instance of the role is ejected or removed: tell the client when one may be back.
  auto res = json_error_response(503, message, keep_alive_);
  res.set(http::field::retry_after, std::to_string(ctx_.lb.retry_after(kind).count()));
  co_await send(std::move(res));
}

net::awaitable<void> pd_request::end_stream_with_error(std::string_view message) {
  if (!writer_.header_sent()) {
    co_await send(json_error_response(502, message, keep_alive_));
    co_return;
  }
  // Close a half-sent event first, so the error is an event of its own that clients can parse.
  std::string tail = writer_.at_event_boundary() ? "" : "\n\n";
  tail += "data: ";
  tail += protocol::json_error::make(message, protocol::json_error::type_for(502), 502);
  tail += "\n\ndata: [DONE]\n\n";
  answer_keeps_connection_ =
      !co_await writer_.write_chunk(tail) && !co_await writer_.write_last() && keep_alive_;
}

net::awaitable<void> pd_request::send(http::response<http::string_body> res) {
  if (!request_id_.empty()) res.set("X-Request-Id", request_id_);
  status_ = res.result_int();
  client_.expires_after(seconds(ctx_.cfg.client_write_timeout));
  auto [ec, n] = co_await http::async_write(client_, res, use_nothrow);
  answer_keeps_connection_ = !ec && keep_alive_;
}

}  // namespace glm::proxy
