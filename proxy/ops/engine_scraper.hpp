#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "balancer/balancer.hpp"
#include "proxy/core/asio.hpp"
#include "proxy/core/proxy_context.hpp"
#include "proxy/ops/metrics_fetch.hpp"

namespace glm::proxy {

// Reads every backend's GET /metrics every --scrape-interval and hands what vLLM reports (its
// queue and KV usage, protocol::engine_metrics) to the balancer, which adds it to its own counts
// (balancer/engine_load.hpp). README "Load from the engines".
//
// Each round asks the balancer for its scrape targets (every instance not on its way out) and
// starts one scrape per target that has none under way, all on the executor run() was spawned
// on (worker 0, like instance_prober). A scrape has a deadline of min(0.8 x interval,
// --connect-timeout) from when it is sent, re-armed on every operation with what is left of it,
// so it ends before the next round; a body past --max-metrics-bytes is refused whole. The body
// is parsed here, outside the balancer's lock, and the sample is stamped with the time the
// scrape was sent.
//
// A failed scrape (connect, timeout, non-2xx, size cap, a body that is not usable vLLM metrics)
// is counted in glm_proxy_backend_scrape_errors_total{role,backend,reason} and reported to the
// balancer, which never ejects for it and keeps the last good sample until it is stale. It is
// logged at WARNING the first time for an instance (and again after a success), at DEBUG after
// that, so a backend that is down does not flood the log.
//
// Not thread-safe: run() and the scrapes it starts use one executor. Lifetime: the scraper and
// the context must outlive that executor's io_context, whose destruction destroys the frames of
// scrapes still under way (each marks its entry idle: targets_ must still exist).
class engine_scraper {
 public:
  explicit engine_scraper(proxy_context& ctx) : ctx_(ctx) {}

  // Runs until the executor stops; returns at once when scraping is off (--scrape-interval 0).
  net::awaitable<void> run();

 private:
  // What is kept per instance between scrapes.
  struct target_state {
    metrics_fetch fetch;  // its buffers
    bool busy = false;    // a scrape is under way
    bool warned = false;  // a failure was logged at WARNING since the last success
  };

  net::awaitable<void> scrape(balancer::scrape_target target, target_state& state);
  void failed(const balancer::scrape_target& target, target_state& state, std::string_view reason,
              const std::string& detail);

  proxy_context& ctx_;
  // By instance id (never reused). A std::map: a scrape holds a reference to its entry while
  // others are added. An entry goes once its instance is gone and no scrape of it is under way.
  std::map<std::uint64_t, target_state> targets_;
};

}  // namespace glm::proxy
