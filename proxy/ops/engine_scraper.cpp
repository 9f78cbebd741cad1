#include "proxy/ops/engine_scraper.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "protocol/engine_metrics.hpp"
#include "proxy/upstream/upstream_exchange.hpp"

namespace glm::proxy {
namespace {

using clock = std::chrono::steady_clock;

// What is left until `deadline`, as one operation's timeout: never negative, so an operation
// started late fails at once with a timeout rather than waiting forever.
clock::duration left_until(clock::time_point deadline) {
  return std::max(clock::duration::zero(), deadline - clock::now());
}

}  // namespace

std::string_view engine_scraper::reason_of(const error_code& ec) {
  if (ec == beast::error::timeout) return "timeout";
  if (ec == http::error::body_limit) return "too_large";
  if (ec == net::error::connection_refused || ec == net::error::host_not_found ||
      ec == net::error::host_unreachable || ec == net::error::network_unreachable) {
    return "connect";
  }
  return "read";
}

net::awaitable<void> engine_scraper::run() {
  const auto interval = ctx_.lb.engine_options().interval;
  if (interval.count() <= 0) co_return;
  auto ex = co_await net::this_coro::executor;
  net::steady_timer timer(ex);
  auto next = clock::now();
  for (;;) {
    auto targets = ctx_.lb.scrape_targets();
    // Ids are never reused: forget the warnings of instances that are gone.
    std::erase_if(warned_, [&](std::uint64_t id) {
      return std::none_of(targets.begin(), targets.end(),
                          [id](const balancer::scrape_target& t) { return t.id == id; });
    });
    for (auto& target : targets) {
      // A scrape still under way ends by its deadline, before this round in the normal case; a
      // second one of the same instance would only pile up behind a stalled backend.
      if (!busy_.insert(target.id).second) continue;
      net::co_spawn(ex, scrape(std::move(target)), [](std::exception_ptr e) {
        // Nothing in a scrape throws by design; if something does, lose the scrape, not the
        // process.
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          spdlog::error("a /metrics scrape ended by an exception: {}", x.what());
        }
      });
    }
    // A fixed schedule, not interval after each round; after a stall, start again from now.
    next += interval;
    if (next < clock::now()) next = clock::now() + interval;
    timer.expires_at(next);
    auto [ec] = co_await timer.async_wait(use_nothrow);
    if (ec) co_return;
  }
}

net::awaitable<void> engine_scraper::scrape(balancer::scrape_target target) {
  struct done {
    std::set<std::uint64_t>& busy;
    std::uint64_t id;
    ~done() { busy.erase(id); }
  } on_exit{busy_, target.id};
  const auto budget = std::min<clock::duration>(
      std::chrono::duration_cast<clock::duration>(ctx_.lb.engine_options().interval) * 8 / 10,
      seconds(ctx_.cfg.connect_timeout));
  // The gauges are at least as fresh as the moment the question was sent.
  const auto sent = clock::now();
  std::string body;
  const std::string reason = co_await fetch(target.address, sent + budget, body);
  if (!reason.empty()) {
    failed(target, reason, reason);
    co_return;
  }
  protocol::engine_metrics m;
  const auto status = protocol::engine_metrics::parse(body, m);
  if (!status.ok()) {
    failed(target, protocol::to_string(status.error),
           std::string(protocol::to_string(status.error)) + " at byte " +
               std::to_string(status.offset));
    co_return;
  }
  balancer::engine_sample sample;
  sample.running = m.running;
  sample.waiting = m.waiting;
  sample.kv_usage = m.kv_usage;
  sample.taken = sent;
  ctx_.lb.engine_report(target.id, sample);
  warned_.erase(target.id);
}

net::awaitable<std::string> engine_scraper::fetch(const balancer::backend_address& to,
                                                  clock::time_point deadline, std::string& body) {
  upstream_exchange up(co_await net::this_coro::executor);
  upstream_exchange::request req{http::verb::get, "/metrics", 11};
  req.set(http::field::host, to.to_string());
  // prometheus_client answers OpenMetrics or gzip only when asked; the parser reads plain text.
  req.set(http::field::accept, "text/plain");
  req.prepare_payload();
  auto how = upstream_exchange::connection::pooled;
  error_code ec;
  for (;;) {
    ec = co_await up.connect(to, left_until(deadline), how);
    if (!ec) ec = co_await up.send(req, left_until(deadline));
    if (!ec) ec = co_await up.read_header(left_until(deadline));
    // A kept-alive connection the backend closed meanwhile: once more on a fresh one.
    if (ec && up.reused() && !up.answer_started() && ec != beast::error::timeout) {
      how = upstream_exchange::connection::fresh;
      continue;
    }
    break;
  }
  if (ec) co_return std::string(reason_of(ec));
  const unsigned status = up.status();
  ec = co_await up.read_body(body, status / 100 == 2 ? ctx_.cfg.max_metrics_bytes : 64 * 1024,
                             deadline);
  if (!ec) {
    up.recycle(to);
  } else {
    up.close();
  }
  if (status / 100 != 2) co_return "status";
  // A body cut at the cap could read as smaller numbers: refused whole.
  if (ec) co_return std::string(reason_of(ec));
  co_return std::string{};
}

void engine_scraper::failed(const balancer::scrape_target& target, std::string_view reason,
                            const std::string& detail) {
  ctx_.lb.engine_scrape_failed(target.id);
  const std::string backend = target.address.to_string();
  ctx_.stats.scrape_error(target.kind, backend, reason);
  const auto level = warned_.insert(target.id).second ? spdlog::level::warn : spdlog::level::debug;
  spdlog::log(level,
              "{} instance {}: /metrics not usable ({}); its last report counts until it is "
              "stale, counted in glm_proxy_backend_scrape_errors_total, further failures are "
              "logged at DEBUG until one succeeds",
              balancer::to_string(target.kind), backend, detail);
}

}  // namespace glm::proxy
