#include "proxy/ops/instance_prober.hpp"

#include <spdlog/spdlog.h>

#include "proxy/core/ejection_log.hpp"
#include "proxy/upstream/backend_call.hpp"

namespace glm::proxy {

net::awaitable<void> instance_prober::run() {
  auto ex = co_await net::this_coro::executor;
  net::steady_timer timer(ex);
  for (;;) {
    log_ejections(ctx_.lb, ctx_.cfg.eject_after);
    for (auto& task : ctx_.lb.due_probes()) {
      net::co_spawn(ex, probe(std::move(task)), net::detached);
    }
    // New instances arrive through /instances/add, and ejections happen, on any thread: look again
    // at least every 100 ms rather than sleeping until the next scheduled probe only.
    auto wake = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
    if (auto next = ctx_.lb.next_probe_time()) wake = std::min(wake, *next);
    timer.expires_at(wake);
    auto [ec] = co_await timer.async_wait(use_nothrow);
    if (ec) co_return;
  }
}

net::awaitable<void> instance_prober::probe(balancer::probe_task task) {
  auto answer = co_await call_backend(task.address, http::verb::get, "/v1/models", {},
                                      std::chrono::seconds(5));
  const auto kind = balancer::to_string(task.kind);
  const auto name = task.address.to_string();
  if (answer.ok()) {
    spdlog::info("{} instance {} answered its probe and is {}", kind, name,
                 task.ejected ? "back in rotation" : "added");
  } else {
    spdlog::warn("{} instance {} failed its probe: {}", kind, name,
                 answer.ec ? answer.ec.message() : "HTTP " + std::to_string(answer.status));
  }
  ctx_.lb.probe_result(task.pending_id, answer.ok());
}

}  // namespace glm::proxy
