#pragma once

#include <optional>
#include <string>
#include <vector>

#include "balancer/request_lease.hpp"
#include "protocol/client_request.hpp"
#include "protocol/sse_rewrite.hpp"
#include "proxy/core/access_record.hpp"
#include "proxy/core/answer.hpp"
#include "proxy/core/asio.hpp"
#include "proxy/core/metaserver_registry.hpp"
#include "proxy/core/proxy_context.hpp"
#include "proxy/pd/answer_writer.hpp"
#include "proxy/pd/backend_attempts.hpp"
#include "proxy/pd/drain_watch.hpp"
#include "proxy/pd/sse_relay.hpp"

namespace glm::proxy {

class upstream_exchange;

// One client completion request served in two steps: a prefill on the least-loaded prefiller
// (max_tokens 1, do_remote_decode), then the client's own request, plus the prefiller's
// kv_transfer_params, on the least-loaded decoder, whose answer is relayed as it arrives through
// protocol::sse_rewrite (cached_tokens fixed, a "recomputed" preemption hidden and resumed by a
// re-prefill of prompt + generated text on fresh backends, continuing the same client stream).
//
// While it runs, a watcher waits for the client to go away; if it does, the upstream connection
// is closed at once (vLLM then frees the sequence's KV cache) and the request unwinds. All balancer
// load is held by a request_lease on this object, so every way out gives it back.
//
// In the layerwise mode (--pd-mode layerwise) a round is layerwise_request's instead: decode
// first, prefill once the decoder called back; the rest (relay, failures, load) is this class's.
//
// Lifetime: lives on the session's coroutine frame for one request; `client`, `req` and `record`
// outlive it. `record.id` is the request's id; the request fills in the rest it knows.
class pd_request final : private sse_relay::observer {
 public:
  pd_request(proxy_context& ctx, beast::tcp_stream& client, http::request<http::string_body>& req,
             std::string_view target, access_record& record);

  // Answers the request completely (the relayed answer, or a JSON error; an SSE error event once
  // the stream has begun) and says how it went. Never throws on the request path.
  net::awaitable<answer> run();

 private:
  // The layerwise round: a second flow that uses this request's relay and failure answers.
  friend class layerwise_request;

  enum class decode_end { answered, recompute };

  net::awaitable<std::optional<refusal_reason>> serve();
  net::awaitable<void> watch_client();
  // One round: a prefill, then a decode; recompute when the decoder preempted the request.
  net::awaitable<decode_end> round(const protocol::client_request& body,
                                   std::optional<refusal_reason>& refused);
  // Relays the decoder's answer, whose header `up` has read, as the request asked: a stream
  // through relay_stream, a body through relay_body.
  net::awaitable<decode_end> relay(upstream_exchange& up, const balancer::backend_address& from);
  // Both give the decoder's connection back to the pool as soon as its answer is read whole,
  // before the last client write, so the client's next request can reuse it. The stream is
  // relayed by sse_relay; this answers the ways it can stop.
  net::awaitable<decode_end> relay_stream(upstream_exchange& up,
                                          const balancer::backend_address& from,
                                          protocol::sse_rewrite& rewrite);
  net::awaitable<decode_end> relay_body(upstream_exchange& up,
                                        const balancer::backend_address& from);
  // Answers a call that did not get a usable answer. Returns the refusal, if it is one.
  net::awaitable<std::optional<refusal_reason>> answer_call_failure(balancer::role role,
                                                                    const call_result& result);
  // Ends the request the way any failure would, for the drain's end.
  net::awaitable<void> answer_drained();
  // Records time to first token or the gap since the last decode write.
  void note_decode_write();
  // sse_relay::observer
  void on_decode_bytes() override;
  void on_events(std::size_t events) override;
  // The body of the next round after a recompute; nullopt when it cannot be built.
  const protocol::client_request* prepare_recompute();

  proxy_context& ctx_;
  beast::tcp_stream& client_;
  http::request<http::string_body>& req_;
  std::string target_;
  access_record& record_;
  answer_writer out_;
  protocol::client_request parsed_;
  balancer::request_lease lease_;
  upstream_exchange* active_ = nullptr;  // the upstream the watcher closes if the client leaves
  // Layerwise: the wait for the decoder's callbacks, which the watcher (and the drain) end too.
  metaserver_registry::registration* waiting_ = nullptr;
  bool client_gone_ = false;  // the watcher saw the client leave
  bool client_lost_ = false;  // a write to the client failed (or timed out)
  bool drained_ = false;      // --drain-timeout ran out: end the request now
  drain_watch::registration drain_;
  backend_attempts attempts_;
  std::int64_t cached_tokens_ = 0;  // the prefiller's usage.prompt_tokens_details.cached_tokens
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_write_{};  // of decode bytes, for token gaps

  // Recompute state: what the decoders generated so far, recomputes done, the next round's body.
  protocol::generation_progress progress_;
  std::int64_t recomputes_ = 0;
  std::string next_body_;
  protocol::client_request next_parsed_;
};

}  // namespace glm::proxy
