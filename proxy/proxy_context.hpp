#pragma once

#include "balancer/balancer.hpp"
#include "proxy/config.hpp"

namespace glm::proxy {

// What every session on every worker thread shares. The config is read-only after start; the
// balancer is thread-safe.
struct proxy_context {
  const config& cfg;
  balancer::balancer& lb;
};

}  // namespace glm::proxy
