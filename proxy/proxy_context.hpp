#pragma once

#include "balancer/balancer.hpp"
#include "proxy/config.hpp"
#include "proxy/metrics.hpp"

namespace glm::proxy {

// What every session on every worker thread shares. The config is read-only after start; the
// balancer and the metrics are thread-safe.
struct proxy_context {
  const config& cfg;
  balancer::balancer& lb;
  metrics& stats;
};

}  // namespace glm::proxy
