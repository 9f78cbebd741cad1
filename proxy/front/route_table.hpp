#pragma once

#include <string_view>

#include "proxy/core/answer.hpp"
#include "proxy/core/asio.hpp"
#include "proxy/core/endpoint.hpp"

namespace glm::proxy {

// Who may call a route (front/access_policy decides).
enum class access_rule {
  open,       // /healthcheck, /metrics: probes and Prometheus carry no tokens
  inference,  // --api-key when set
  admin,      // --admin-token when set, loopback clients only otherwise
  decoders,   // no token: the decoders the balancer knows, and loopback (front/decoder_peers)
};

// What glm-proxy serves, listed once: each endpoint with its method, who may call it and whether
// it takes a --max-inflight slot. A route served with GET is served with HEAD too, without a
// body (RFC 9110 9.3.2), so HEAD-based health checkers work.
struct route {
  endpoint id;
  http::verb method;
  access_rule access;
  bool limited;  // completions: a place under --max-inflight, held until the answer has ended
};

class route_table {
 public:
  // The route of a path (without its query), or nullptr: 404.
  static const route* find(std::string_view path);
  // Whether `method` calls `r`: its own method, or HEAD where that is GET.
  static bool accepts(const route& r, http::verb method);
  // The 405 answer for a method `r` does not accept, with its Allow header.
  static answer method_not_allowed(const route& r, bool keep_alive);
  // The 404 answer for `path`.
  static answer not_found(std::string_view path, bool keep_alive);
};

}  // namespace glm::proxy
