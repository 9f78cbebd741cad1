#include "proxy/ops/engine_scraper.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>

#include "protocol/engine_metrics.hpp"

namespace glm::proxy {
namespace {

using clock = std::chrono::steady_clock;

void log_exception(std::exception_ptr e) {
  // Nothing in a scrape throws by design; if something does, lose the scrape, not the process.
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    spdlog::error("a /metrics scrape ended by an exception: {}", x.what());
  }
}

}  // namespace

net::awaitable<void> engine_scraper::run() {
  const auto interval = ctx_.lb.engine_options().interval;
  if (interval.count() <= 0) co_return;
  auto ex = co_await net::this_coro::executor;
  net::steady_timer timer(ex);
  auto next = clock::now();
  for (;;) {
    const auto targets = ctx_.lb.scrape_targets();
    std::erase_if(targets_, [&](const auto& entry) {
      return !entry.second.busy &&
             std::none_of(targets.begin(), targets.end(),
                          [&](const balancer::scrape_target& t) { return t.id == entry.first; });
    });
    for (const auto& target : targets) {
      target_state& state = targets_[target.id];
      // A scrape still under way ends by its deadline, before this round in the normal case; a
      // second one of the same instance would only pile up behind a stalled backend.
      if (state.busy) continue;
      state.busy = true;
      net::co_spawn(ex, scrape(target, state), log_exception);
    }
    // A fixed schedule, not interval after each round; after a stall, start again from now.
    next += interval;
    if (next < clock::now()) next = clock::now() + interval;
    timer.expires_at(next);
    auto [ec] = co_await timer.async_wait(use_nothrow);
    if (ec) co_return;
  }
}

net::awaitable<void> engine_scraper::scrape(balancer::scrape_target target, target_state& state) {
  struct done {
    target_state& state;
    ~done() { state.busy = false; }
  } on_exit{state};
  const auto budget = std::min<clock::duration>(
      std::chrono::duration_cast<clock::duration>(ctx_.lb.engine_options().interval) * 8 / 10,
      seconds(ctx_.cfg.connect_timeout));
  // The gauges are at least as fresh as the moment the question was sent.
  const auto sent = clock::now();
  const std::string_view reason =
      co_await state.fetch.get(target.address, sent + budget, ctx_.cfg.max_metrics_bytes);
  if (!reason.empty()) {
    failed(target, state, reason, std::string(reason));
    co_return;
  }
  // Parsed here, on the worker, outside the balancer's lock.
  protocol::engine_metrics m;
  const auto status = protocol::engine_metrics::parse(state.fetch.body(), m);
  if (!status.ok()) {
    const auto word = protocol::to_string(status.error);
    failed(target, state, word, std::string(word) + " at byte " + std::to_string(status.offset));
    co_return;
  }
  balancer::engine_sample sample;
  sample.running = m.running;
  sample.waiting = m.waiting;
  sample.kv_usage = m.kv_usage;
  // Both bounded by the parser (block_size <= 2^20); saturate rather than wrap on a huge count.
  constexpr auto most = std::numeric_limits<std::uint64_t>::max();
  sample.cache_tokens = m.num_gpu_blocks > most / std::max<std::uint64_t>(m.block_size, 1)
                            ? most
                            : m.num_gpu_blocks * m.block_size;
  sample.taken = sent;
  ctx_.lb.engine_report(target.id, sample);
  state.warned = false;
}

void engine_scraper::failed(const balancer::scrape_target& target, target_state& state,
                            std::string_view reason, const std::string& detail) {
  ctx_.lb.engine_scrape_failed(target.id);
  const std::string backend = target.address.to_string();
  ctx_.stats.scrape_error(target.kind, backend, reason);
  const auto level = state.warned ? spdlog::level::debug : spdlog::level::warn;
  state.warned = true;
  spdlog::log(level,
              "{} instance {}: /metrics not usable ({}); its last report counts until it is "
              "stale, counted in glm_proxy_backend_scrape_errors_total, further failures are "
              "logged at DEBUG until one succeeds",
              balancer::to_string(target.kind), backend, detail);
}

}  // namespace glm::proxy
