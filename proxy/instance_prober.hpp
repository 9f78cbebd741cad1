#pragma once

#include "proxy/asio.hpp"
#include "proxy/proxy_context.hpp"

namespace glm::proxy {

// Probes the instances waiting to be added (POST /instances/add) with GET /v1/models, 5 s each, as
// the balancer schedules them: every --waiting-retry-interval until one answers 2xx (it joins the
// rotation) or --max-waiting-retries probes have failed (it is dropped).
class instance_prober {
 public:
  explicit instance_prober(proxy_context& ctx) : ctx_(ctx) {}

  // Runs until the executor stops.
  net::awaitable<void> run();

 private:
  net::awaitable<void> probe(std::uint64_t pending_id, balancer::role kind,
                             balancer::backend_address to);

  proxy_context& ctx_;
};

}  // namespace glm::proxy
