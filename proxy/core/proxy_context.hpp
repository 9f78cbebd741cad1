#pragma once

#include "balancer/balancer.hpp"
#include "proxy/config.hpp"
#include "proxy/core/inflight_gate.hpp"
#include "proxy/core/metaserver_registry.hpp"
#include "proxy/core/metrics.hpp"

namespace glm::proxy {

// What every session on every worker thread shares. The config is read-only after start; the
// balancer, the metrics, the in-flight gate and the metaserver registry are thread-safe.
struct proxy_context {
  const config& cfg;
  balancer::balancer& lb;
  metrics& stats;
  inflight_gate& inflight;          // --max-inflight and its line, across all workers
  metaserver_registry& metaserver;  // layerwise mode: requests waiting for decoder callbacks
};

}  // namespace glm::proxy
