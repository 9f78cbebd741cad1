#include "proxy/server.hpp"

#include <spdlog/spdlog.h>

#include <csignal>

#include "protocol/layerwise_splicer.hpp"
#include "proxy/front/connection_refusal.hpp"
#include "proxy/front/http_session.hpp"
#include "proxy/logging.hpp"
#include "proxy/pd/drain_watch.hpp"
#include "proxy/reuse_port_steering.hpp"
#include "proxy/upstream/upstream_pool.hpp"

namespace glm::proxy {
namespace {

std::vector<std::unique_ptr<net::io_context>> make_workers(int n) {
  std::vector<std::unique_ptr<net::io_context>> workers;
  for (int i = 0; i < n; ++i) workers.push_back(std::make_unique<net::io_context>(1));
  return workers;
}

balancer::balancer::options balancer_options(const config& cfg) {
  balancer::balancer::options o;
  o.max_waiting_retries = cfg.max_waiting_retries;
  o.waiting_retry_interval =
      std::chrono::duration_cast<std::chrono::milliseconds>(seconds(cfg.waiting_retry_interval));
  o.eject_after = cfg.eject_after;
  o.eject_base = std::chrono::duration_cast<std::chrono::milliseconds>(seconds(cfg.eject_seconds));
  o.routing = cfg.routing;
  o.engine.interval =
      std::chrono::duration_cast<std::chrono::milliseconds>(seconds(cfg.scrape_interval));
  o.engine.kv_high = cfg.kv_high;
  return o;
}

// Refused connections that may linger at once (see connection_refusal); a flood beyond this is
// closed at once instead of holding more descriptors.
constexpr std::size_t max_lingering_refusals = 256;

void log_exception(std::exception_ptr e) {
  // Nothing on the request path throws by design; if something does, lose the connection, not
  // the process.
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    spdlog::error("session ended by an exception: {}", x.what());
  }
}

}  // namespace

server::server(const config& cfg, config_reload::reader reread)
    : cfg_(cfg),
      lb_(cfg.prefillers, cfg.decoders, balancer_options(cfg)),
      connections_(cfg.max_connections),
      lingering_refusals_(max_lingering_refusals),
      answering_(0),
      // The line is as long as the limit: past that, waiting would only pile up latency.
      inflight_(cfg.max_inflight, cfg.max_inflight),
      ctx_{cfg_, lb_, metrics_, inflight_, metaserver_},
      scraper_(ctx_),
      workers_(make_workers(cfg.workers)),
      acceptor_(*workers_[0]),
      signals_(*workers_[0]),
      reload_(cfg_, lb_, std::move(reread)),
      prober_(ctx_) {
  for (auto& w : workers_) guards_.push_back(net::make_work_guard(*w));
}

server::~server() = default;

error_code server::listen() {
  if (auto ec = signals_.error()) {
    spdlog::critical("cannot read signals (signalfd): {}", ec.message());
    return ec;
  }
  error_code ec;
  tcp::resolver resolver(*workers_[0]);
  auto results = resolver.resolve(cfg_.host, std::to_string(cfg_.port),
                                  tcp::resolver::passive | tcp::resolver::address_configured, ec);
  if (ec) return ec;
  for (const auto& entry : results) {
    tcp::endpoint endpoint = entry.endpoint();
    acceptor_.open(endpoint.protocol(), ec);
    if (ec) continue;
    acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec && cfg_.reuse_port) {
      acceptor_.set_option(net::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>(true), ec);
    }
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (!ec) {
      auto local = acceptor_.local_endpoint(ec);
      auto addr = local.address();
      std::string note;
      if (cfg_.reuse_port) {
        auto steered = reuse_port_steering::take_over(acceptor_);
        note = steered.ec ? " (SO_REUSEPORT; could not take the port's new connections: " +
                                steered.ec.message() + ")"
                          : " (SO_REUSEPORT; new connections to the port come here; " +
                                std::to_string(steered.index) + " older listener(s) on it)";
      }
      if (cfg_.mode == pd_mode::layerwise) set_metaserver_url(local.port());
      log_always(fmt::format("listening on {}:{}{}",
                             addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string(),
                             local.port(), note));
      return {};
    }
    error_code ignored;
    acceptor_.close(ignored);
  }
  return ec ? ec : net::error::host_not_found;
}

void server::set_metaserver_url(std::uint16_t bound_port) {
  std::string url = cfg_.metaserver_url;
  if (url.empty()) {
    // --host as given (a name decoders resolve, or a literal); command_line refused a wildcard.
    std::string host = cfg_.host;
    if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
    url = "http://" + host + ":" + std::to_string(bound_port) + "/v1/metaserver";
  }
  metaserver_.set_decode_params(protocol::layerwise_splicer::decode_params(url));
  log_always("layerwise PD mode: decoders call the metaserver back at " + url);
}

net::awaitable<void> server::accept_loop() {
  for (;;) {
    auto& worker = *workers_[next_worker_];
    next_worker_ = (next_worker_ + 1) % workers_.size();
    auto [ec, socket] = co_await acceptor_.async_accept(worker, use_nothrow);
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) {
      // Out of file descriptors and similar: back off briefly instead of spinning.
      spdlog::warn("accept failed: {}", ec.message());
      net::steady_timer pause(acceptor_.get_executor(), std::chrono::milliseconds(50));
      co_await pause.async_wait(use_nothrow);
      continue;
    }
    // Counted here, on the accepting thread, so the limit holds across all workers; the place
    // is given back by the session's frame on whichever worker it ends.
    auto place = connections_.try_enter();
    if (!place) {
      net::co_spawn(worker, connection_refusal::serve(ctx_, std::move(socket), lingering_refusals_),
                    log_exception);
      continue;
    }
    net::co_spawn(worker,
                  http_session::serve(ctx_, std::move(socket), std::move(*place), answering_),
                  log_exception);
  }
}

net::awaitable<void> server::handle_signals() {
  for (;;) {
    auto [ec, signal] = co_await signals_.next();
    if (ec) {
      spdlog::critical("cannot read signals: {}; stop glm-proxy with SIGKILL", ec.message());
      co_return;
    }
    if (signal != SIGHUP) {
      spdlog::info("signal {}: no longer accepting; waiting for {} request(s) in flight", signal,
                   answering_.held());
      co_await drain();
      co_return;
    }
    reload_.reload();
  }
}

net::awaitable<void> server::drain() {
  error_code ignored;
  acceptor_.close(ignored);
  drain_watch::begin(workers_, cfg_.drain_timeout);
  auto deadline = std::chrono::steady_clock::now() + seconds(cfg_.drain_timeout);
  net::steady_timer tick(acceptor_.get_executor());
  // Every request read holds a place in answering_ until its answer is written and logged: those
  // holding backend load, those in the --max-inflight line (they get the same deadline to be
  // admitted and served) and those holding nothing (an error answer, /v1/models).
  auto busy = [this] { return answering_.held() > 0; };
  while (busy() && std::chrono::steady_clock::now() < deadline) {
    tick.expires_after(std::chrono::milliseconds(20));
    co_await tick.async_wait(use_nothrow);
  }
  if (busy()) {
    spdlog::warn(
        "drain timeout: {} request(s) still being answered ({} of them waiting for "
        "--max-inflight) are cut",
        answering_.held(), inflight_.waiting());
  }
  for (auto& w : workers_) w->stop();
}

int server::run() {
  net::co_spawn(*workers_[0], accept_loop(), net::detached);
  net::co_spawn(*workers_[0], handle_signals(), net::detached);
  net::co_spawn(*workers_[0], prober_.run(), net::detached);
  net::co_spawn(*workers_[0], scraper_.run(), net::detached);
  for (auto& w : workers_) net::co_spawn(*w, upstream_pool::evict_periodically(), net::detached);
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < workers_.size(); ++i) {
    threads.emplace_back([w = workers_[i].get()] { w->run(); });
  }
  workers_[0]->run();
  for (auto& t : threads) t.join();
  // The workers are stopped; their io_contexts (and the waiters suspended on them) go with this
  // server. A slot given back from now on must not be handed to such a waiter.
  inflight_.close();
  metaserver_.close();
  spdlog::info("stopped");
  return 0;
}

}  // namespace glm::proxy
