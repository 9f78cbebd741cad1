#pragma once

#include <string>
#include <string_view>

#include "balancer/backend_address.hpp"
#include "proxy/core/asio.hpp"

namespace glm::proxy {

// The answer of a small control-plane call to a backend (/v1/models, /reset_prefix_cache, probes).
struct backend_answer {
  error_code ec;  // connect, send or read failure; status and body are then empty
  unsigned status = 0;
  std::string body;

  bool ok() const { return !ec && status / 100 == 2; }
};

// One request on a fresh connection, all of it within `timeout`. Bodies over 1 MiB are refused.
net::awaitable<backend_answer> call_backend(const balancer::backend_address& to, http::verb method,
                                            std::string_view target, std::string_view body,
                                            std::chrono::steady_clock::duration timeout);

}  // namespace glm::proxy
