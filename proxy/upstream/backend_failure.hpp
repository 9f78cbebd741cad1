#pragma once

#include <string>
#include <string_view>

#include "balancer/backend_address.hpp"
#include "proxy/core/asio.hpp"
#include "proxy/core/failure_kind.hpp"
#include "proxy/core/request_ending.hpp"

namespace glm::proxy {

// How one backend call failed, as one value (Envoy's PoolFailureReason): a transport error, an
// answer with an error status, or a 2xx answer that cannot be used. Everything the proxy does
// about a failure is derived here, in one place: the metric label (kind()), the status and body
// the client gets, the access line's ending, the log word, whether another attempt may help and
// whether it counts toward ejecting the instance.
//
// A plain value: copyable, no I/O, safe to build and read on any thread.
class backend_failure {
 public:
  // A connect, send or read error. `ec` must be set.
  static backend_failure transport(balancer::role role, const balancer::backend_address& backend,
                                   error_code ec);
  // An answer whose status is not 2xx; `body` is the backend's (passed on to the client).
  static backend_failure status(balancer::role role, const balancer::backend_address& backend,
                                unsigned status, std::string body);
  // A 2xx answer the proxy cannot use; `detail` says why ("the body is not JSON ...").
  static backend_failure bad_answer(balancer::role role, const balancer::backend_address& backend,
                                    std::string detail);

  balancer::role role() const { return role_; }
  const std::string& backend() const { return backend_; }
  failure_kind kind() const { return kind_; }
  // The backend's own status for an error answer; 0 otherwise.
  unsigned backend_status() const { return status_; }

  // The status the client gets: the backend's own, 504 for a timeout, 502 for everything else.
  unsigned client_status() const;
  // The body the client gets: the backend's error body (non-JSON wrapped in a JSON error), or
  // empty when the client gets a JSON error made from client_message().
  std::string client_body() const;
  // "prefill instance 10.0.0.1:6700 timed out: ...": for the client's JSON error or SSE event.
  std::string client_message() const;
  // What went wrong, for the warning logged per attempt: "Connection refused", "HTTP 500".
  std::string log_word() const;
  request_ending ending() const;

  // Whether another attempt may succeed: not after a 400, which every instance would give.
  bool retryable() const;
  // Whether it counts toward ejecting the instance: a 4xx is the request's own fault.
  bool instance_fault() const;

 private:
  backend_failure(balancer::role role, const balancer::backend_address& backend, failure_kind kind);

  balancer::role role_;
  std::string backend_;
  failure_kind kind_;
  error_code ec_;
  unsigned status_ = 0;
  std::string text_;  // the backend's error body (status), or the detail (bad_answer)
};

// The failure kind of a transport error.
failure_kind failure_kind_of(const error_code& ec);

}  // namespace glm::proxy
