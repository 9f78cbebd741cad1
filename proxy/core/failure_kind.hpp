#pragma once

#include <array>
#include <string_view>

namespace glm::proxy {

// How a backend call failed: the `kind` label of glm_proxy_upstream_errors_total. Everything
// else about a failure (the client's status, the access line's ending, the log word) is derived
// from it by upstream/backend_failure.
enum class failure_kind : unsigned char {
  refused,     // nothing listens on the port
  reset,       // the connection was reset or closed before the answer ended
  timeout,     // connect, send, header or body took longer than its deadline
  status,      // an answer with a non-2xx status
  bad_answer,  // a 2xx answer the proxy cannot use (a prefill body that does not parse)
  other,       // anything else: garbage instead of HTTP, a resolver error, ...
};

inline constexpr std::array all_failure_kinds{failure_kind::refused,    failure_kind::reset,
                                              failure_kind::timeout,    failure_kind::status,
                                              failure_kind::bad_answer, failure_kind::other};

constexpr std::string_view to_string(failure_kind k) {
  switch (k) {
    case failure_kind::refused:
      return "refused";
    case failure_kind::reset:
      return "reset";
    case failure_kind::timeout:
      return "timeout";
    case failure_kind::status:
      return "status";
    case failure_kind::bad_answer:
      return "bad_answer";
    case failure_kind::other:
      return "other";
  }
  return "other";
}

}  // namespace glm::proxy
