#pragma once

#include <array>
#include <string_view>

#include "proxy/core/request_ending.hpp"

namespace glm::proxy {

// Why a request (or a connection) was answered with an error before any backend was asked: the
// `reason` label of glm_proxy_refusals_total. Every such answer carries one (front/answer.hpp
// makes a refusal only with a reason), so none goes uncounted.
enum class refusal_reason : unsigned char {
  malformed,           // bytes that are not HTTP, a bad chunk size, conflicting Content-Lengths
  not_implemented,     // a transfer coding before chunked ("gzip, chunked"): 501
  headers_too_large,   // 431
  body_too_large,      // 413
  invalid_body,        // the completion body is not a JSON object of the expected shape: 400
  not_found,           // no such path: 404
  method_not_allowed,  // 405
  unauthorized,        // 401: missing or wrong API key / admin token
  forbidden,           // 403: an operations endpoint from a remote client, no admin token set
  max_connections,     // over --max-connections
  max_inflight,        // over --max-inflight, and no place in line
  queue_timeout,       // no slot within --queue-timeout
  no_instance,         // every instance of a role ejected or removed: 503
};

inline constexpr std::array all_refusal_reasons{
    refusal_reason::malformed,          refusal_reason::not_implemented,
    refusal_reason::headers_too_large,  refusal_reason::body_too_large,
    refusal_reason::invalid_body,       refusal_reason::not_found,
    refusal_reason::method_not_allowed, refusal_reason::unauthorized,
    refusal_reason::forbidden,          refusal_reason::max_connections,
    refusal_reason::max_inflight,       refusal_reason::queue_timeout,
    refusal_reason::no_instance,
};

constexpr std::string_view to_string(refusal_reason r) {
  switch (r) {
    case refusal_reason::malformed:
      return "malformed";
    case refusal_reason::not_implemented:
      return "not_implemented";
    case refusal_reason::headers_too_large:
      return "headers_too_large";
    case refusal_reason::body_too_large:
      return "body_too_large";
    case refusal_reason::invalid_body:
      return "invalid_body";
    case refusal_reason::not_found:
      return "not_found";
    case refusal_reason::method_not_allowed:
      return "method_not_allowed";
    case refusal_reason::unauthorized:
      return "unauthorized";
    case refusal_reason::forbidden:
      return "forbidden";
    case refusal_reason::max_connections:
      return "max_connections";
    case refusal_reason::max_inflight:
      return "max_inflight";
    case refusal_reason::queue_timeout:
      return "queue_timeout";
    case refusal_reason::no_instance:
      return "no_instance";
  }
  return "malformed";
}

// The access line's ending of a refused request: a queue timeout is a `timeout`, an absent
// instance `no_instance`, everything else `rejected`.
constexpr request_ending ending_of(refusal_reason r) {
  if (r == refusal_reason::queue_timeout) return request_ending::timeout;
  if (r == refusal_reason::no_instance) return request_ending::no_instance;
  return request_ending::rejected;
}

}  // namespace glm::proxy
