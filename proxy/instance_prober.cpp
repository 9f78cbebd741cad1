#include "proxy/instance_prober.hpp"

#include <spdlog/spdlog.h>

#include "proxy/backend_call.hpp"

namespace glm::proxy {

net::awaitable<void> instance_prober::run() {
  auto ex = co_await net::this_coro::executor;
  net::steady_timer timer(ex);
  for (;;) {
    for (auto& task : ctx_.lb.due_probes()) {
      net::co_spawn(ex, probe(task.pending_id, task.kind, task.address), net::detached);
    }
    // New instances arrive through /instances/add on any thread: look again at least every
    // 100 ms rather than sleeping until the next scheduled probe only.
    auto wake = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
    if (auto next = ctx_.lb.next_probe_time()) wake = std::min(wake, *next);
    timer.expires_at(wake);
    auto [ec] = co_await timer.async_wait(use_nothrow);
    if (ec) co_return;
  }
}

net::awaitable<void> instance_prober::probe(std::uint64_t pending_id, balancer::role kind,
                                            balancer::backend_address to) {
  auto answer =
      co_await call_backend(to, http::verb::get, "/v1/models", {}, std::chrono::seconds(5));
  if (answer.ok()) {
    spdlog::info("{} instance {} answered its probe and is added", balancer::to_string(kind),
                 to.to_string());
  } else {
    spdlog::warn("{} instance {} failed its probe: {}", balancer::to_string(kind), to.to_string(),
                 answer.ec ? answer.ec.message() : "HTTP " + std::to_string(answer.status));
  }
  ctx_.lb.probe_result(pending_id, answer.ok());
}

}  // namespace glm::proxy
