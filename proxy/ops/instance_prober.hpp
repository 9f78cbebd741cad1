#pragma once

#include "proxy/core/asio.hpp"
#include "proxy/core/proxy_context.hpp"

namespace glm::proxy {

// Probes instances with GET /v1/models, 5 s each, as the balancer schedules them: those waiting to
// be added (POST /instances/add), every --waiting-retry-interval until one answers 2xx (it joins
// the rotation) or --max-waiting-retries probes have failed (it is dropped); and ejected ones
// whose ejection time is up, which a 2xx brings back and a failure ejects again for longer. It
// also logs the balancer's ejections that no request logged (core/ejection_log).
class instance_prober {
 public:
  explicit instance_prober(proxy_context& ctx) : ctx_(ctx) {}

  // Runs until the executor stops.
  net::awaitable<void> run();

 private:
  net::awaitable<void> probe(balancer::probe_task task);

  proxy_context& ctx_;
};

}  // namespace glm::proxy
