#include "proxy/pd/layerwise_request.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/experimental/awaitable_operators.hpp>

#include "protocol/layerwise_request_ids.hpp"
#include "protocol/layerwise_splicer.hpp"
#include "protocol/request_id.hpp"
#include "proxy/upstream/upstream_exchange.hpp"

namespace glm::proxy {
namespace {

using balancer::role;

// The two halves of a round, run side by side, and what each learnt. Lives on the round's frame.
struct round_halves {
  round_halves(proxy_context& c, const bool& gone, const bool& drain,
               const protocol::client_request& b, backend_attempts& d, backend_attempts& p,
               metaserver_registry::registration& r, upstream_exchange& up, upstream_exchange*& act,
               metaserver_registry::registration*& wait)
      : ctx(c),
        client_gone(gone),
        drained(drain),
        body(b),
        decode_attempts(d),
        prefill_attempts(p),
        callbacks(r),
        decode_up(up),
        active(act),
        waiting(wait) {}

  proxy_context& ctx;
  const bool& client_gone;
  const bool& drained;
  const protocol::client_request& body;
  // One per role, so that stopping or ending the retries of one leaves the other's alone.
  backend_attempts& decode_attempts;
  backend_attempts& prefill_attempts;
  metaserver_registry::registration& callbacks;
  upstream_exchange& decode_up;
  upstream_exchange*& active;  // pd's: the upstream its watcher closes
  metaserver_registry::registration*& waiting;

  // Which half failed first, on its own; the other was then stopped, and its ending (how =
  // client_gone) is not what the client is to be told.
  enum class failure { none, decode, no_callback, prefill };
  failure first = failure::none;
  call_result decode;
  bool decode_done = false;
  call_result prefill;
  upstream_exchange* prefill_up = nullptr;

  // The decode call: returns at the decoder's answer header (for a non-stream request that is
  // after the whole generation), or when it fails or is stopped.
  net::awaitable<void> decode_half(const std::vector<std::string_view>& pieces) {
    co_await net::this_coro::throw_if_cancelled(false);
    decode = co_await decode_attempts.call(role::decode, body, pieces, decode_up);
    decode_done = true;
    if (decode.how == call_result::ending::answered || first != failure::none) co_return;
    // The decoder failed, or the client left, or the drain ran out: no callback is to be
    // waited for and no prefill finished.
    first = failure::decode;
    prefill_attempts.stop();
    callbacks.cancel();
    if (prefill_up != nullptr) prefill_up->close();
  }

  // The wait for every prompt's callback, then the prefill.
  net::awaitable<void> prefill_half() {
    co_await net::this_coro::throw_if_cancelled(false);
    waiting = &callbacks;
    const bool all_in = co_await callbacks.wait(seconds(ctx.cfg.metaserver_timeout));
    waiting = nullptr;
    if (!all_in) {
      // Cancelled (the decode ended, the client left, the drain ran out), or timed out.
      if (first != failure::none || client_gone || drained) co_return;
      fail(failure::no_callback);
      co_return;
    }
    // The decoder has allocated the blocks the prefiller will fill: were it to fail now, another
    // decoder could not be given that KV cache, so its attempt in progress is its last.
    decode_attempts.final_attempt();
    const auto posted = callbacks.take_callbacks();
    const std::string params = protocol::layerwise_splicer::prefill_params(posted);
    std::vector<std::string_view> pieces;
    protocol::layerwise_splicer::prefill_pieces(body, params, pieces);
    upstream_exchange up(co_await net::this_coro::executor);
    prefill_up = &up;
    // While the decode call is still waiting, the watcher closes it and the decode half closes
    // this one; once the decoder has answered, the watcher must reach the prefill itself.
    if (decode_done) active = &up;
    prefill = co_await prefill_attempts.call(role::prefill, body, pieces, up);
    prefill_up = nullptr;
    if (active == &up) active = &decode_up;
    if (prefill.how == call_result::ending::answered) {
      callbacks.finish(metaserver_registry::outcome::prefilled);
      co_return;
    }
    callbacks.finish(metaserver_registry::outcome::prefill_failed);
    if (first == failure::none && !client_gone && !drained) fail(failure::prefill);
  }

  // Ends the round for the client: the decode connection is closed, so the decoder aborts the
  // request and frees its blocks, and its callbacks are answered 502.
  void fail(failure what) {
    first = what;
    decode_attempts.stop();
    decode_up.close();
    callbacks.finish(metaserver_registry::outcome::prefill_failed);
  }
};

}  // namespace

net::awaitable<pd_request::decode_end> layerwise_request::round(
    const protocol::client_request& body, std::optional<refusal_reason>& refused) {
  using namespace net::experimental::awaitable_operators;
  pd_request& pd = pd_;
  proxy_context& ctx = pd.ctx_;
  upstream_exchange decode_up(co_await net::this_coro::executor);
  pd.active_ = &decode_up;
  struct forget {
    pd_request& pd;
    ~forget() {
      pd.active_ = nullptr;
      pd.waiting_ = nullptr;
    }
  } forget_on_exit{pd};

  // vLLM names its engine requests after X-Request-Id; the connector reports those names. A
  // client may reuse its id (or two clients pick the same), so each attempt's id gets a random
  // suffix and the registry never confuses two requests.
  std::string backend_id = pd.record_.id + "-" + protocol::make_request_id().substr(0, 8);
  std::vector<std::string> ids;
  const bool chat = pd.target_ == to_string(endpoint::chat_completions);
  protocol::layerwise_request_ids::ids(body, chat, backend_id, ids);
  auto callbacks = ctx.metaserver.expect(std::move(ids), co_await net::this_coro::executor);
  if (!callbacks.active()) {
    // Only if a random suffix repeated while the other request is still waiting.
    pd.record_.end(request_ending::upstream_error);
    co_await pd.out_.error(500, {}, "could not register the request's layerwise ids; try again");
    co_return pd_request::decode_end::answered;
  }
  spdlog::debug("[{}] layerwise: backend request id {}", pd.record_.id, backend_id);

  backend_attempts decode_attempts(ctx, pd.lease_, pd.req_, pd.record_, pd.target_, pd.client_gone_,
                                   pd.drained_);
  backend_attempts prefill_attempts(ctx, pd.lease_, pd.req_, pd.record_, pd.target_,
                                    pd.client_gone_, pd.drained_);
  decode_attempts.use_request_id(backend_id);
  prefill_attempts.use_request_id(backend_id);
  // A retry goes to another decoder with an id of its own: callbacks from the one that failed
  // (some prompts of a list may have called) are then unknown instead of mixed in.
  decode_attempts.before_each_attempt([&](int attempt) {
    if (attempt == 1) return;
    std::string retry_id = pd.record_.id + "-" + protocol::make_request_id().substr(0, 8);
    std::vector<std::string> retry_ids;
    protocol::layerwise_request_ids::ids(body, chat, retry_id, retry_ids);
    if (!callbacks.restart(std::move(retry_ids))) return;  // a repeated suffix: keep the old id
    decode_attempts.use_request_id(retry_id);
    prefill_attempts.use_request_id(std::move(retry_id));
  });
  std::vector<std::string_view> decode_pieces;
  protocol::layerwise_splicer::decode_pieces(body, ctx.metaserver.decode_params(), decode_pieces);

  round_halves halves(ctx, pd.client_gone_, pd.drained_, body, decode_attempts, prefill_attempts,
                      callbacks, decode_up, pd.active_, pd.waiting_);
  co_await (halves.decode_half(decode_pieces) && halves.prefill_half());

  if (pd.client_gone_) co_return pd_request::decode_end::answered;  // run() accounts for it
  if (pd.drained_) {
    co_await pd.answer_drained();
    co_return pd_request::decode_end::answered;
  }
  if (halves.first == round_halves::failure::no_callback) {
    // The decoder never called back: broken, or it cannot reach --metaserver-url.
    const std::string decoder = pd.record_.decoder;
    const std::string message = "decode instance " + decoder +
                                " did not call the metaserver back within " +
                                fmt::format("{:g}", ctx.cfg.metaserver_timeout) + " s";
    spdlog::warn("[{}] {}", pd.record_.id, message);
    ctx.stats.upstream_error(role::decode, decoder, failure_kind::timeout);
    pd.lease_.decode_failed();
    pd.record_.end(request_ending::timeout);
    co_await pd.out_.error(504, {}, message);
    co_return pd_request::decode_end::answered;
  }
  if (halves.first == round_halves::failure::prefill) {
    refused = co_await pd.answer_call_failure(role::prefill, halves.prefill);
    co_return pd_request::decode_end::answered;
  }
  if (halves.first == round_halves::failure::decode) {
    refused = co_await pd.answer_call_failure(role::decode, halves.decode);
    co_return pd_request::decode_end::answered;
  }
  // Both halves are done and neither failed: the prefill answered, the decoder's header is in.
  pd.cached_tokens_ = halves.prefill.prefill.cached_tokens;
  co_return co_await pd.relay(decode_up, *halves.decode.backend);
}

}  // namespace glm::proxy
