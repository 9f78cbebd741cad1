#pragma once

#include <array>
#include <string_view>

namespace glm::proxy {

// The endpoints glm-proxy serves, plus the two labels of requests that reach none: `other` (an
// unknown path) and `invalid` (bytes that never made an HTTP request). It is the closed set of
// glm_proxy_requests_total's `endpoint` label: a label per unknown path would let clients grow
// the metrics without bound. What each endpoint accepts is front/route_table's business.
enum class endpoint : unsigned char {
  completions,
  chat_completions,
  healthcheck,
  metrics,
  models,
  reset_prefix_cache,
  instances_add,
  instances_remove,
  metaserver,
  other,
  invalid,
};

inline constexpr std::array all_endpoints{
    endpoint::completions,   endpoint::chat_completions, endpoint::healthcheck,
    endpoint::metrics,       endpoint::models,           endpoint::reset_prefix_cache,
    endpoint::instances_add, endpoint::instances_remove, endpoint::metaserver,
    endpoint::other,         endpoint::invalid,
};

// The path of a served endpoint ("/v1/completions"), or "other" / "invalid".
constexpr std::string_view to_string(endpoint e) {
  switch (e) {
    case endpoint::completions:
      return "/v1/completions";
    case endpoint::chat_completions:
      return "/v1/chat/completions";
    case endpoint::healthcheck:
      return "/healthcheck";
    case endpoint::metrics:
      return "/metrics";
    case endpoint::models:
      return "/v1/models";
    case endpoint::reset_prefix_cache:
      return "/reset_prefix_cache";
    case endpoint::instances_add:
      return "/instances/add";
    case endpoint::instances_remove:
      return "/instances/remove";
    case endpoint::metaserver:
      return "/v1/metaserver";
    case endpoint::other:
      return "other";
    case endpoint::invalid:
      return "invalid";
  }
  return "other";
}

// The endpoint a path (without its query) names; `other` when none.
constexpr endpoint endpoint_of(std::string_view path) {
  for (endpoint e : all_endpoints) {
    if (e != endpoint::other && e != endpoint::invalid && to_string(e) == path) return e;
  }
  return endpoint::other;
}

}  // namespace glm::proxy
