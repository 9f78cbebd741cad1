#include "proxy/pd/pd_request.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/experimental/awaitable_operators.hpp>

#include "protocol/recompute_splicer.hpp"
#include "protocol/request_splicer.hpp"
#include "protocol/response_rewriter.hpp"
#include "proxy/core/client_departure.hpp"
#include "proxy/core/json_response.hpp"
#include "proxy/pd/layerwise_request.hpp"
#include "proxy/pd/prefill_fallback_rule.hpp"
#include "proxy/upstream/upstream_exchange.hpp"

namespace glm::proxy {
namespace {

using balancer::role;
using protocol::response_rewriter;

// An SSE event split over reads is held until it is complete; no real event is near this.
constexpr std::size_t max_event_bytes = 4 << 20;
// The reference's default when the client gives no max_tokens.
constexpr std::int64_t default_max_tokens = 16;
// A preempted request is re-prefilled at most this many times before the stream is ended.
constexpr std::int64_t max_recomputes = 8;

}  // namespace

pd_request::pd_request(proxy_context& ctx, beast::tcp_stream& client,
                       http::request<http::string_body>& req, std::string_view target,
                       access_record& record)
    : ctx_(ctx),
      client_(client),
      req_(req),
      target_(target),
      record_(record),
      out_(client, record.id, req.keep_alive(), req.version() < 11,
           seconds(ctx.cfg.client_write_timeout)),
      drain_(drain_watch::of(client.get_executor()).watch([this] {
        drained_ = true;
        if (active_ != nullptr) active_->close();
        if (waiting_ != nullptr) waiting_->cancel();
      })),
      attempts_(ctx, lease_, req, record, target_, client_gone_, drained_) {}

net::awaitable<answer> pd_request::run() {
  using namespace net::experimental::awaitable_operators;
  auto outcome = co_await (serve() || watch_client());
  std::optional<refusal_reason> refused;
  if (outcome.index() == 0) refused = std::get<0>(outcome);
  if (client_gone_ || client_lost_) {
    // Counted here only, whichever saw it first: the watcher, or a write that failed.
    ctx_.stats.client_disconnect();
    record_.end(request_ending::client_gone);
    out_.abandon();
    if (client_gone_) {
      spdlog::info("[{}] client disconnected; upstream closed and load released", record_.id);
    }
  }
  // 499: nginx's "client closed request", for a client that left before any answer.
  unsigned status = out_.status() != 0 ? out_.status() : 499;
  co_return answer::already_written(status, out_.keeps_connection(), refused);
}

net::awaitable<void> pd_request::watch_client() {
  co_await client_departure::wait(client_.socket());
  auto state = co_await net::this_coro::cancellation_state;
  if (state.cancelled() != net::cancellation_type::none) co_return;  // serve() finished first
  client_gone_ = true;
  if (active_ != nullptr) active_->close();
  if (waiting_ != nullptr) waiting_->cancel();
}

net::awaitable<std::optional<refusal_reason>> pd_request::serve() {
  // Cancellation (the client left) must surface as error codes, not exceptions.
  co_await net::this_coro::throw_if_cancelled(false);
  record_.prompt_bytes = req_.body().size();
  if (auto error = protocol::request_splicer::parse(req_.body(), parsed_)) {
    record_.end(request_ending::rejected);
    co_await out_.send(json_error_response(400, *error, req_.keep_alive()));
    co_return refusal_reason::invalid_body;
  }
  lease_ = ctx_.lb.begin_request(req_.body().size());
  std::optional<refusal_reason> refused;
  const protocol::client_request* body = &parsed_;
  const bool layerwise = ctx_.cfg.mode == pd_mode::layerwise;
  for (;;) {
    // Not a conditional expression: g++ 12 miscompiles a co_await that a ?: may skip.
    decode_end end;
    if (layerwise) {
      layerwise_request flow(*this);
      end = co_await flow.round(*body, refused);
    } else {
      end = co_await round(*body, refused);
    }
    if (end != decode_end::recompute) break;
    body = prepare_recompute();
    if (body == nullptr) {
      record_.end(request_ending::upstream_error);
      co_await out_.end_with_error("the decoder preempted the request and it cannot be resumed");
      break;
    }
  }
  co_return refused;
}

net::awaitable<pd_request::decode_end> pd_request::round(const protocol::client_request& body,
                                                         std::optional<refusal_reason>& refused) {
  upstream_exchange up(co_await net::this_coro::executor);
  active_ = &up;
  struct forget {
    upstream_exchange*& active;
    ~forget() { active = nullptr; }
  } forget_on_exit{active_};
  // The body of each call, as views for a gather write (no copy of the prompt).
  std::vector<std::string_view> pieces;
  protocol::request_splicer::prefill_pieces(body, pieces);
  auto prefill = co_await attempts_.call(role::prefill, body, pieces, up);
  const bool fallback = prefill_fallback_rule::applies(ctx_.cfg.fallback, prefill);
  if (prefill.how != call_result::ending::answered && !fallback) {
    refused = co_await answer_call_failure(role::prefill, prefill);
    co_return decode_end::answered;
  }
  if (fallback) {
    // The client's bytes as they came: the decoder prefills them itself.
    prefill_fallback_rule::note(ctx_, prefill, record_.id);
    record_.prefill_route = prefill_fallback_rule::route;
    cached_tokens_ = 0;
    pieces.assign(1, body.body);
  } else {
    cached_tokens_ = prefill.prefill.cached_tokens;
    protocol::request_splicer::decode_pieces(body, prefill.prefill.kv_transfer_params, pieces);
  }
  auto decode = co_await attempts_.call(role::decode, body, pieces, up);
  if (decode.how != call_result::ending::answered) {
    refused = co_await answer_call_failure(role::decode, decode);
    co_return decode_end::answered;
  }
  co_return co_await relay(up, *decode.backend);
}

net::awaitable<pd_request::decode_end> pd_request::relay(upstream_exchange& up,
                                                         const balancer::backend_address& from) {
  if (!parsed_.stream) co_return co_await relay_body(up, from);
  protocol::sse_rewrite rewrite({parsed_.include_usage, cached_tokens_, max_event_bytes},
                                progress_);
  co_return co_await relay_stream(up, from, rewrite);
}

net::awaitable<std::optional<refusal_reason>> pd_request::answer_call_failure(
    role kind, const call_result& result) {
  if (result.how == call_result::ending::failed) {
    const backend_failure& failure = *result.failure;
    record_.end(failure.ending());
    co_await out_.error(failure.client_status(), failure.client_body(), failure.client_message());
    co_return std::nullopt;
  }
  if (result.how == call_result::ending::drained) {
    co_await answer_drained();
    co_return std::nullopt;
  }
  if (result.how != call_result::ending::no_instance) co_return std::nullopt;  // client gone
  record_.end(request_ending::no_instance);
  std::string message = "no " + std::string(balancer::to_string(kind)) + " instance is available";
  if (out_.stream_started()) {
    co_await out_.end_with_error(message);
  } else {
    // Every instance of the role is ejected or removed: tell the client when one may be back.
    auto res = json_error_response(503, message, req_.keep_alive());
    res.set(http::field::retry_after, std::to_string(ctx_.lb.retry_after(kind).count()));
    co_await out_.send(std::move(res));
  }
  co_return refusal_reason::no_instance;
}

net::awaitable<pd_request::decode_end> pd_request::relay_stream(
    upstream_exchange& up, const balancer::backend_address& from, protocol::sse_rewrite& rewrite) {
  auto relayed = co_await sse_relay::run(up, from, out_, rewrite,
                                         seconds(ctx_.cfg.stream_idle_timeout), *this);
  switch (relayed.how) {
    case sse_relay::ending::complete:
      co_return decode_end::answered;
    case sse_relay::ending::recomputed:
      co_return decode_end::recompute;
    case sse_relay::ending::client_lost:
      client_lost_ = true;
      co_return decode_end::answered;
    case sse_relay::ending::upstream_failed:
      break;
  }
  if (client_gone_) co_return decode_end::answered;
  if (drained_) {
    co_await answer_drained();
    co_return decode_end::answered;
  }
  const error_code ec = relayed.ec;
  std::string message =
      ec == beast::error::timeout
          ? "decode instance sent nothing for " +
                std::to_string(static_cast<long>(ctx_.cfg.stream_idle_timeout)) + " s"
      : ec == http::error::body_limit ? "decode instance sent an oversized SSE event"
                                      : "decode instance failed mid-stream: " + ec.message();
  spdlog::warn("[{}] {}", record_.id, message);
  record_.end(backend_failure::transport(role::decode, from, ec).ending());
  co_await out_.end_with_error(message);
  co_return decode_end::answered;
}

void pd_request::on_decode_bytes() {
  // The decoder has the KV cache now: the prefiller's share of this request is done.
  lease_.release_prefill();
  note_decode_write();
}

void pd_request::on_events(std::size_t events) {
  ctx_.stats.stream_events(events);
  record_.events += events;
}

net::awaitable<void> pd_request::answer_drained() {
  record_.end(request_ending::drain_timeout);
  spdlog::warn("[{}] drain timeout: the request is ended", record_.id);
  co_await out_.error(503, {}, "glm-proxy is shutting down and its --drain-timeout ran out");
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

const protocol::client_request* pd_request::prepare_recompute() {
  ++recomputes_;
  ctx_.stats.recompute();
  if (recomputes_ > max_recomputes) return nullptr;
  // The reference's rule: the original budget less the chunks seen (the recomputed one counted),
  // plus the recomputes so far.
  std::int64_t budget =
      parsed_.max_tokens.value_or(default_max_tokens) - progress_.chunks + recomputes_;
  if (budget < 1) budget = 1;
  auto body = protocol::recompute_splicer::body(parsed_, progress_.text, budget);
  if (!body) return nullptr;
  next_body_ = std::move(*body);
  if (protocol::request_splicer::parse(next_body_, next_parsed_)) return nullptr;
  spdlog::info("[{}] decoder preempted the request; re-prefilling with {} more tokens", record_.id,
               budget);
  return &next_parsed_;
}

net::awaitable<pd_request::decode_end> pd_request::relay_body(
    upstream_exchange& up, const balancer::backend_address& from) {
  std::string body;
  auto deadline = std::chrono::steady_clock::now() + seconds(ctx_.cfg.stream_idle_timeout);
  auto ec = co_await up.read_body(body, ctx_.cfg.max_body_bytes, deadline);
  lease_.release_prefill();
  if (ec) {
    up.close();
    if (client_gone_) co_return decode_end::answered;
    if (drained_) {
      co_await answer_drained();
      co_return decode_end::answered;
    }
    auto failure = backend_failure::transport(role::decode, from, ec);
    record_.end(failure.ending());
    co_await out_.error(failure.client_status(), {}, failure.client_message());
    co_return decode_end::answered;
  }
  up.recycle(from);  // read to its end
  if (body.find("recomputed") != std::string::npos && response_rewriter::is_recomputed(body)) {
    // Without a stream the client gets one body: keep this part's text for the final answer.
    // The budget rule counts chunks; a whole body is its completion tokens plus the recomputed
    // chunk.
    progress_.chunks += response_rewriter::completion_tokens(body).value_or(0) + 1;
    response_rewriter::append_choice_text(body, progress_.text);
    co_return decode_end::recompute;
  }
  if (auto rewritten = response_rewriter::with_cached_tokens(body, cached_tokens_)) {
    body = std::move(*rewritten);
  }
  if (!progress_.text.empty()) {
    if (auto whole = response_rewriter::with_choice_text_prefix(body, progress_.text)) {
      body = std::move(*whole);
    }
  }
  co_await out_.send(json_response(up.status(), std::move(body), req_.keep_alive()));
  co_return decode_end::answered;
}

}  // namespace glm::proxy
