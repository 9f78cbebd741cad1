#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "balancer/request_lease.hpp"
#include "protocol/client_request.hpp"
#include "protocol/prefill_result.hpp"
#include "protocol/prefix_hasher.hpp"
#include "proxy/core/access_record.hpp"
#include "proxy/core/asio.hpp"
#include "proxy/core/proxy_context.hpp"
#include "proxy/upstream/backend_failure.hpp"

namespace glm::proxy {

class upstream_exchange;

// How one role's backend call ended, retries included.
struct call_result {
  enum class ending {
    answered,     // `backend` answered 2xx; for a decoder, its body is still to be read
    failed,       // `failure` is the last attempt's failure: retries exhausted, or not retryable
    no_instance,  // no instance of the role could be chosen
    client_gone,  // the client left; nothing is to be answered
    drained,      // --drain-timeout ran out after SIGTERM: the request is to be ended
  };
  ending how = ending::client_gone;
  std::optional<balancer::backend_address> backend;
  std::optional<backend_failure> failure;
  protocol::prefill_result prefill;  // answered prefill: what the decode step needs
};

// The one retry loop of a completion request, keyed by role: prefill and decode differ in data
// (timeouts, what a 2xx must contain), not in control flow (Seastar's retry strategy). Each
// attempt chooses an instance (the one call site per role that asks the balancer), connects
// (a pooled connection first, a fresh one when the backend had closed it before reading), sends
// the body pieces with one gather write and reads the answer's header; a prefill's 2xx body is
// read and parsed too, so an answer that does not parse is a failure like any other. A failure
// is logged, counted and reported to the lease (for ejection); it is retried with backoff, on
// another instance when there is one, up to max(1, --max-retries) attempts, unless it is a 400.
//
// Not thread-safe; lives on the request's frame, whose objects it refers to.
class backend_attempts {
 public:
  // `client_request` is the client's HTTP request (its headers are for the routing choice);
  // `client_gone` is set by the request's watcher when the client leaves, `drained` when the
  // drain after SIGTERM runs out.
  backend_attempts(proxy_context& ctx, balancer::request_lease& lease,
                   const http::request<http::string_body>& client_request, access_record& record,
                   std::string_view target, const bool& client_gone, const bool& drained);

  // Calls `role` with `pieces` (views that stay valid until this returns) over `up`, which the
  // caller closes if the client leaves. `body` is the request being served (after a recompute,
  // the re-prefill's), for the routing choice.
  net::awaitable<call_result> call(balancer::role role, const protocol::client_request& body,
                                   const std::vector<std::string_view>& pieces,
                                   upstream_exchange& up);

  // The X-Request-Id of the backend calls from now on, instead of the request's id (the layerwise
  // mode sends one unique per backend request). The string is copied.
  void use_request_id(std::string id) { backend_id_ = std::move(id); }
  // Ends the calls of this object: an attempt in progress, once its connection is closed by the
  // caller, and every later one returns with how = client_gone, nothing logged or counted. For a
  // layerwise round whose other half failed: the round answers the client itself.
  void stop() { stopped_ = true; }
  // The attempt in progress (or the next) is the last: its failure is final, whatever
  // --max-retries says. For a layerwise decode whose decoder has called back: the KV cache is
  // being pushed to that decoder, so no other one can take the request over.
  void final_attempt() { final_ = true; }
  // Called before each attempt's choice with its number (1, 2, ...): a layerwise decode gives
  // each attempt an X-Request-Id of its own (use_request_id) and registers the ids that go with it.
  void before_each_attempt(std::function<void(int attempt)> hook) {
    before_attempt_ = std::move(hook);
  }

 private:
  // What the role's policy routes on: nothing for least_loaded and round_robin, the routing key
  // for consistent_hash, the chained prefix blocks for cache_aware. Hashed once per body and
  // outside the balancer's lock.
  balancer::route_request route_for(balancer::role role, const protocol::client_request& body);
  // The instance for the next attempt of `role`; charges it to the lease.
  std::optional<balancer::backend_address> choose(balancer::role role,
                                                  const protocol::client_request& body);
  // Connects, sends and reads the header; a reused connection the backend had closed before
  // reading the request is replaced by a fresh one once.
  net::awaitable<error_code> start(upstream_exchange& up, const balancer::backend_address& to,
                                   const std::vector<std::string_view>& pieces,
                                   std::chrono::steady_clock::duration wait);
  // After a header: the failure the answer is, if it is one. A 2xx prefill is read and parsed
  // into `out`.
  net::awaitable<std::optional<backend_failure>> judge(
      balancer::role role, upstream_exchange& up, const balancer::backend_address& to,
      std::chrono::steady_clock::time_point started, protocol::prefill_result& out);
  void note_failure(const backend_failure& failure, int attempt, int attempts);
  net::awaitable<void> pause(int attempt);

  proxy_context& ctx_;
  balancer::request_lease& lease_;
  const http::request<http::string_body>& client_request_;
  access_record& record_;
  std::string_view target_;
  const bool& client_gone_;
  const bool& drained_;
  protocol::prefix_digest digest_;   // of the body digest_of_ points at
  const char* digest_of_ = nullptr;  // that body's first byte; a recompute's body is another
  bool digest_blocks_ = false;       // digest_ has its blocks, not only the routing key
  std::string backend_id_;           // use_request_id(); empty: record_.id
  bool stopped_ = false;             // stop()
  bool final_ = false;               // final_attempt()
  std::function<void(int)> before_attempt_;
};

}  // namespace glm::proxy
