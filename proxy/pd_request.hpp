#pragma once

#include <optional>
#include <string>
#include <vector>

#include "balancer/request_lease.hpp"
#include "protocol/client_request.hpp"
#include "protocol/sse_framer.hpp"
#include "proxy/access_record.hpp"
#include "proxy/asio.hpp"
#include "proxy/chunked_writer.hpp"
#include "proxy/proxy_context.hpp"

namespace glm::proxy {

class upstream_exchange;

// One client completion request served in two steps: a prefill on the least-loaded prefiller
// (max_tokens 1, do_remote_decode), then the client's own request, plus the prefiller's
// kv_transfer_params, on the least-loaded decoder, whose answer is relayed as it arrives.
//
// The relay forwards the decoder's bytes untouched except for two kinds of SSE event, found by a
// substring test before any parse: the usage chunk, whose cached_tokens is set to the
// prefiller's figure, and a choice with "stop_reason":"recomputed", which is hidden and starts a
// re-prefill of prompt + generated text on fresh backends, continuing the same client stream.
//
// While it runs, a watcher waits for the client to go away; if it does, the upstream connection
// is closed at once (vLLM then frees the sequence's KV cache) and the request unwinds. All balancer
// load is held by a request_lease on this object, so every way out gives it back.
//
// Lifetime: lives on the session's coroutine frame for one request; `client` and `req` outlive it.
class pd_request {
 public:
  // `record` receives what the access line reports: id, backends, TTFT, events, how it ended.
  pd_request(proxy_context& ctx, beast::tcp_stream& client, http::request<http::string_body>& req,
             std::string_view target, access_record& record);

  // Answers the request completely: the relayed answer, or a JSON error (SSE error event once the
  // stream has begun). Returns whether the client connection can carry another request.
  net::awaitable<bool> run();

  // The HTTP status sent to the client (200 for a stream, even one ended by an error event).
  unsigned status() const { return status_; }

 private:
  // What one attempt against a backend ended with, before its body is read.
  struct attempt {
    error_code ec;        // connect, send or header read failure
    unsigned status = 0;  // the backend's status when ec is clear
  };
  enum class decode_outcome { answered, recompute };

  net::awaitable<bool> serve();
  net::awaitable<void> watch_client();

  // Prefill with retries: the prefiller's kv_transfer_params (empty when it gave none), or nullopt
  // once an error has been answered.
  net::awaitable<std::optional<std::string>> prefill(const protocol::client_request& body);
  net::awaitable<decode_outcome> decode(const protocol::client_request& body,
                                        std::string_view kv_transfer_params);
  // Both give the decoder's connection back to the pool as soon as its answer is read whole,
  // before the last client write, so the client's next request can reuse it.
  net::awaitable<decode_outcome> relay_stream(upstream_exchange& up,
                                              const balancer::backend_address& from);
  net::awaitable<decode_outcome> relay_body(upstream_exchange& up,
                                            const balancer::backend_address& from);
  // Frames one read of the decoder's stream and writes it to the client as one chunk, with the
  // events that need it rewritten or dropped. False when the client write failed.
  net::awaitable<bool> forward_events(std::string_view piece);
  void classify_event(std::string_view event, std::string_view piece);
  void emit(std::string_view bytes, std::string_view piece);
  // Records time to first token or the gap since the last decode write.
  void note_decode_write();
  static std::string_view error_kind(const attempt& a);
  // Prepares the body of the next round after a recompute; false when it cannot be built.
  bool prepare_recompute();

  // Connects (a pooled connection first), sends pieces_ and reads the answer's header.
  net::awaitable<attempt> start(upstream_exchange& up, const balancer::backend_address& to,
                                std::chrono::steady_clock::duration wait);
  net::awaitable<bool> retry_pause(int attempt_number);
  // Answers a failed backend attempt: the backend's own status and body, or 502/504.
  net::awaitable<void> answer_failure(const char* role, const balancer::backend_address& to,
                                      const attempt& a, const std::string& body);
  // Answers an error: a JSON response, or an SSE error event once the stream has begun.
  net::awaitable<void> answer_error(unsigned status, std::string body, std::string_view message);
  // Answers "no instance of this role can be chosen": a 503 with Retry-After.
  net::awaitable<void> answer_no_instance(balancer::role kind);
  net::awaitable<void> send(http::response<http::string_body> res);
  net::awaitable<void> end_stream_with_error(std::string_view message);

  proxy_context& ctx_;
  beast::tcp_stream& client_;
  http::request<http::string_body>& req_;
  std::string target_;
  access_record& record_;
  bool keep_alive_ = false;
  bool answer_keeps_connection_ = false;  // the outcome of the answer sent
  protocol::client_request parsed_;
  std::string request_id_;
  std::int64_t cached_tokens_ = 0;  // the prefiller's usage.prompt_tokens_details.cached_tokens
  balancer::request_lease lease_;
  upstream_exchange* active_ = nullptr;  // the upstream the watcher closes if the client leaves
  bool client_gone_ = false;
  unsigned status_ = 0;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_write_{};  // of decode bytes, for token gaps
  std::size_t events_in_read_ = 0;
  // The body of the backend call in progress, as views for a gather write (no copy of the prompt).
  std::vector<std::string_view> pieces_;

  chunked_writer writer_;
  protocol::sse_framer framer_;
  // One chunk's output: byte ranges of the read buffer (offset >= 0 into `piece`) or of owned_,
  // written with one gather write. Reused for every read, so no allocation once warm.
  struct segment {
    bool owned;
    std::size_t offset;
    std::size_t size;
  };
  std::vector<segment> segments_;
  std::vector<net::const_buffer> buffers_;
  std::string owned_;

  // Recompute state: text generated so far (JSON-escaped), data events seen, recomputes done.
  std::string generated_;
  std::int64_t chunks_seen_ = 0;
  std::int64_t recomputes_ = 0;
  bool recompute_pending_ = false;
  std::string next_body_;
  protocol::client_request next_parsed_;
};

}  // namespace glm::proxy
