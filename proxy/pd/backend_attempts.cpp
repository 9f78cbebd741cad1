#include "proxy/pd/backend_attempts.hpp"

#include <spdlog/spdlog.h>

#include <mutex>
#include <set>

#include "proxy/core/ejection_log.hpp"
#include "proxy/upstream/upstream_exchange.hpp"

namespace glm::proxy {
namespace {

using balancer::role;

// An error answer is for the client; more than this of it is not worth holding.
constexpr std::size_t max_error_body = 1 << 20;

// A prefiller that answers without kv_transfer_params makes the decoder recompute the whole
// prompt: the requests are still served (as the reference proxy does), every one is counted,
// and the first of each instance is logged. The instances are a short list, so is this set.
bool first_prefill_without_kv(const std::string& backend) {
  static std::mutex mutex;
  static std::set<std::string> warned;
  std::lock_guard lock(mutex);
  return warned.insert(backend).second;
}

}  // namespace

backend_attempts::backend_attempts(proxy_context& ctx, balancer::request_lease& lease,
                                   const http::request<http::string_body>& client_request,
                                   access_record& record, std::string_view target,
                                   const bool& client_gone, const bool& drained)
    : ctx_(ctx),
      lease_(lease),
      client_request_(client_request),
      record_(record),
      target_(target),
      client_gone_(client_gone),
      drained_(drained) {}

balancer::route_request backend_attempts::route_for(role r, const protocol::client_request& body) {
  const auto policy =
      r == role::prefill ? ctx_.lb.routing().prefill_policy : ctx_.lb.routing().decode_policy;
  const auto header = [this](std::string_view name) -> std::string_view {
    auto it = client_request_.find(name);
    if (it == client_request_.end()) return {};
    return {it->value().data(), it->value().size()};
  };
  const std::string_view session = header("X-Session-Id");
  // A recompute's re-prefill is a body of its own; it goes back to the prefiller that has the
  // prompt cached while that one is eligible.
  const bool recompute = body.body.data() != client_request_.body().data();
  const bool blocks = policy == balancer::route_policy::cache_aware;
  if (policy != balancer::route_policy::consistent_hash && !blocks) {
    balancer::route_request plain;
    plain.session_key = session;
    plain.recompute = recompute;
    return plain;
  }
  if (digest_of_ != body.body.data() || (blocks && !digest_blocks_)) {
    const protocol::route_headers headers{session, header("X-User-Id")};
    if (blocks) {
      protocol::prefix_hasher::digest(body, headers, digest_);
    } else {
      digest_ = {};
      digest_.routing_key = protocol::prefix_hasher::routing_key(body, headers);
    }
    digest_of_ = body.body.data();
    digest_blocks_ = blocks;
  }
  return balancer::to_route_request(digest_, session, recompute);
}

std::optional<balancer::backend_address> backend_attempts::choose(
    role r, const protocol::client_request& body) {
  // The routing decision of each role is made here and only here.
  const auto request = route_for(r, body);
  auto choice =
      r == role::prefill ? lease_.choose_prefiller(request) : lease_.choose_decoder(request);
  if (!choice) return std::nullopt;
  if (r == role::prefill) {
    record_.prefiller = choice->address.to_string();
    record_.prefill_route = balancer::to_string(choice->reason);
    record_.predicted_tokens = choice->predicted_tokens;
  } else {
    record_.decoder = choice->address.to_string();
    record_.decode_route = balancer::to_string(choice->reason);
  }
  return std::move(choice->address);
}

net::awaitable<call_result> backend_attempts::call(role r, const protocol::client_request& body,
                                                   const std::vector<std::string_view>& pieces,
                                                   upstream_exchange& up) {
  const int attempts = std::max(1, ctx_.cfg.max_retries);
  const auto wait =
      seconds(r == role::prefill ? ctx_.cfg.prefill_timeout : ctx_.cfg.stream_idle_timeout);
  call_result result;
  for (int k = 1;; ++k) {
    if (before_attempt_) before_attempt_(k);
    auto to = choose(r, body);
    if (!to) {
      result.how = call_result::ending::no_instance;
      co_return result;
    }
    const auto started = std::chrono::steady_clock::now();
    std::optional<backend_failure> failure;
    if (auto ec = co_await start(up, *to, pieces, wait)) {
      failure = backend_failure::transport(r, *to, ec);
    } else {
      failure = co_await judge(r, up, *to, started, result.prefill);
    }
    if (client_gone_ || stopped_) co_return result;  // how: client_gone
    if (drained_) {
      result.how = call_result::ending::drained;
      co_return result;
    }
    if (!failure) {
      if (r == role::prefill) {
        lease_.prefill_succeeded();
        // The prefiller's own count of its prompt and of what it found cached: it confirms or
        // corrects what cache_aware predicted. An answer without usage teaches nothing.
        if (result.prefill.prompt_tokens) {
          lease_.prefill_usage(*result.prefill.prompt_tokens, result.prefill.cached_tokens);
        }
      } else {
        lease_.decode_succeeded();
      }
      result.how = call_result::ending::answered;
      result.backend = to;
      co_return result;
    }
    note_failure(*failure, k, attempts);
    if (k >= attempts || !failure->retryable() || final_) {
      result.how = call_result::ending::failed;
      result.failure = std::move(failure);
      co_return result;
    }
    ctx_.stats.retry(r);
    co_await pause(k);
    if (client_gone_ || stopped_) co_return result;  // how: client_gone
    if (drained_) {
      result.how = call_result::ending::drained;
      co_return result;
    }
  }
}

net::awaitable<error_code> backend_attempts::start(upstream_exchange& up,
                                                   const balancer::backend_address& to,
                                                   const std::vector<std::string_view>& pieces,
                                                   std::chrono::steady_clock::duration wait) {
  const std::string host = to.to_string();
  const std::string_view id = backend_id_.empty() ? std::string_view(record_.id) : backend_id_;
  const upstream_exchange::post head{target_, host, id, ctx_.cfg.backend_api_key};
  auto how = upstream_exchange::connection::pooled;
  for (;;) {
    if (client_gone_ || drained_ || stopped_) co_return net::error::operation_aborted;
    error_code ec = co_await up.connect(to, seconds(ctx_.cfg.connect_timeout), how);
    if (ec) co_return ec;
    ec = co_await up.send(head, pieces, wait);
    if (!ec) ec = co_await up.read_header(wait);
    // A kept-alive connection the backend closed before reading the request: that is no failure
    // of the backend, and the request was not seen, so it goes again once on a new connection.
    // A timeout is not that: the backend may be working on it.
    if (ec && up.reused() && !up.answer_started() && ec != beast::error::timeout) {
      how = upstream_exchange::connection::fresh;
      continue;
    }
    co_return ec;
  }
}

net::awaitable<std::optional<backend_failure>> backend_attempts::judge(
    role r, upstream_exchange& up, const balancer::backend_address& to,
    std::chrono::steady_clock::time_point started, protocol::prefill_result& out) {
  const unsigned status = up.status();
  const bool ok = status / 100 == 2;
  if (ok && r == role::decode) co_return std::nullopt;  // the relay reads the body
  const auto deadline =
      r == role::prefill ? started + seconds(ctx_.cfg.prefill_timeout)
                         : std::chrono::steady_clock::now() + seconds(ctx_.cfg.stream_idle_timeout);
  std::string body;
  auto ec = co_await up.read_body(
      body,
      ok ? ctx_.cfg.max_prefill_answer_bytes : std::min(ctx_.cfg.max_body_bytes, max_error_body),
      deadline);
  if (!ec) up.recycle(to);
  // A broken error body still leaves the status to report.
  if (!ok) co_return backend_failure::status(r, to, status, std::move(body));
  // A prefill answer is one token and kv_transfer_params; one past the cap is broken, and is
  // retried elsewhere like any garbled answer rather than buffered whole.
  if (ec == http::error::body_limit) {
    co_return backend_failure::bad_answer(r, to,
                                          "answer larger than --max-prefill-answer-bytes (" +
                                              std::to_string(ctx_.cfg.max_prefill_answer_bytes) +
                                              ")");
  }
  if (ec) co_return backend_failure::transport(r, to, ec);
  const std::string backend = to.to_string();
  ctx_.stats.prefill_duration(
      backend, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  if (auto error = protocol::prefill_result::parse(body, out)) {
    co_return backend_failure::bad_answer(r, to, *error);
  }
  // A layerwise prefill pushes the KV cache itself; its answer's kv_transfer_params are unused.
  if (out.kv_transfer_params.empty() && ctx_.cfg.mode != pd_mode::layerwise) {
    ctx_.stats.prefill_without_kv(backend);
    if (first_prefill_without_kv(backend)) {
      spdlog::warn(
          "[{}] prefill instance {} answered without kv_transfer_params: the decoder recomputes "
          "the whole prompt (is its KV connector configured?); counted in "
          "glm_proxy_prefill_without_kv_total, logged once per instance",
          record_.id, backend);
    }
  }
  co_return std::nullopt;
}

void backend_attempts::note_failure(const backend_failure& failure, int attempt, int attempts) {
  // A failure that is never retried (a 400) is the request's answer, not a failed attempt.
  if (failure.retryable()) {
    spdlog::warn("[{}] {} attempt {}/{} on {} failed: {}", record_.id,
                 balancer::to_string(failure.role()), attempt, attempts, failure.backend(),
                 failure.log_word());
  } else {
    spdlog::info("[{}] {} instance {} refused the request: {}", record_.id,
                 balancer::to_string(failure.role()), failure.backend(), failure.log_word());
  }
  ctx_.stats.upstream_error(failure.role(), failure.backend(), failure.kind());
  if (failure.role() == role::prefill) {
    lease_.prefill_failed(failure.instance_fault());
  } else {
    lease_.decode_failed(failure.instance_fault());
  }
  // An ejection this failure caused is logged now, before the requests it makes refused.
  log_ejections(ctx_.lb, ctx_.cfg.eject_after);
}

net::awaitable<void> backend_attempts::pause(int attempt) {
  // The reference's backoff: retry_delay * 2^(k-1) before retry k.
  double delay = ctx_.cfg.retry_delay * static_cast<double>(1ull << std::min(attempt - 1, 30));
  net::steady_timer timer(co_await net::this_coro::executor, seconds(delay));
  co_await timer.async_wait(use_nothrow);
}

}  // namespace glm::proxy
