#pragma once

#include <optional>
#include <string>

#include "balancer/request_lease.hpp"
#include "protocol/client_request.hpp"
#include "proxy/asio.hpp"
#include "proxy/proxy_context.hpp"

namespace glm::proxy {

class upstream_exchange;
class chunked_writer;

// One client completion request served in two steps: a prefill on the least-loaded prefiller
// (max_tokens 1, do_remote_decode), then the client's own request, plus the prefiller's
// kv_transfer_params, on the least-loaded decoder, whose answer is relayed as it arrives.
//
// While it runs, a watcher waits for the client to go away; if it does, the upstream connection
// is closed at once (vLLM then frees the sequence's KV cache) and the request unwinds. All balancer
// load is held by a request_lease on this object, so every way out gives it back.
//
// Lifetime: lives on the session's coroutine frame for one request; `client` and `req` outlive it.
class pd_request {
 public:
  pd_request(proxy_context& ctx, beast::tcp_stream& client, http::request<http::string_body>& req,
             std::string_view target);

  // Answers the request completely: the relayed answer, or a JSON error (SSE error event once the
  // stream has begun). Returns whether the client connection can carry another request.
  net::awaitable<bool> run();

 private:
  // What one attempt against a backend ended with, before its body is read.
  struct attempt {
    error_code ec;        // connect, send or header read failure
    unsigned status = 0;  // the backend's status when ec is clear
  };

  net::awaitable<bool> serve();
  net::awaitable<void> watch_client();

  // Prefill with retries. On success fills kv_transfer_params_ and returns nullopt; otherwise
  // returns the keep-alive result of the error answer already sent to the client.
  net::awaitable<std::optional<bool>> prefill();
  net::awaitable<bool> decode();
  net::awaitable<bool> relay_stream(upstream_exchange& up);
  net::awaitable<bool> relay_body(upstream_exchange& up);

  net::awaitable<attempt> start(upstream_exchange& up, const balancer::backend_address& to,
                                std::string_view body, std::chrono::steady_clock::duration wait);
  net::awaitable<bool> retry_pause(int attempt_number);
  // Answers a failed backend attempt: the backend's own status and body, or 502/504.
  net::awaitable<bool> send_failure(const char* role, const balancer::backend_address& to,
                                    const attempt& a, const std::string& body);
  net::awaitable<bool> send(http::response<http::string_body> res);
  net::awaitable<bool> end_stream_with_error(chunked_writer& w, std::string_view message);

  proxy_context& ctx_;
  beast::tcp_stream& client_;
  http::request<http::string_body>& req_;
  std::string target_;
  bool keep_alive_ = false;
  protocol::client_request parsed_;
  std::string request_id_;
  std::string kv_transfer_params_;
  balancer::request_lease lease_;
  upstream_exchange* active_ = nullptr;  // the upstream the watcher closes if the client leaves
  bool client_gone_ = false;
};

}  // namespace glm::proxy
