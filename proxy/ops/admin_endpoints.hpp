#pragma once

#include <string_view>

#include "proxy/core/asio.hpp"
#include "proxy/core/proxy_context.hpp"

namespace glm::proxy {

// The endpoints that are not completions: GET /healthcheck and GET /metrics (the proxy's own
// state), and the reference proxy's GET /v1/models, POST /reset_prefix_cache, POST /instances/add
// and POST /instances/remove, with its bodies and statuses. Each returns the answer; the session
// writes it. Stateless; the balancer holds the instance lists.
class admin_endpoints {
 public:
  using response = http::response<http::string_body>;

  explicit admin_endpoints(proxy_context& ctx) : ctx_(ctx) {}

  response healthcheck(bool keep_alive);
  // The Prometheus text exposition of every metric.
  response metrics(bool keep_alive);
  // Asks prefillers, then decoders (3 s each), and returns the first 2xx answer.
  net::awaitable<response> models(bool keep_alive);
  // POSTs `target` (path and query string) to every prefiller, then every decoder.
  net::awaitable<response> reset_prefix_cache(std::string_view target, bool keep_alive);
  response add_instances(std::string_view body, bool keep_alive);
  response remove_instances(std::string_view body, bool keep_alive);

 private:
  proxy_context& ctx_;
};

}  // namespace glm::proxy
