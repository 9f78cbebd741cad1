#include "bench/loadgen/load_run.hpp"

#include <exception>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "bench/loadgen/request_builder.hpp"
#include "bench/loadgen/run_control.hpp"
#include "bench/loadgen/stream_client.hpp"

namespace glm::loadgen {

namespace net = boost::asio;

run_result load_run::run() {
  using clock = std::chrono::steady_clock;
  const std::string body = request_builder::body(config_);
  std::vector<std::string> heads;
  for (const target& to : config_.targets)
    heads.push_back(request_builder::head(config_, to, body.size()));

  const bool hold = config_.hold_mode();
  const std::int64_t clients = hold ? config_.hold : config_.clients;
  const int threads = std::max(1, config_.threads);
  const clock::time_point start = clock::now();
  // Hold mode sends one request per client; its time bound is the per-request timeout. The
  // closed loop stops at --duration when given, and at --requests when given.
  const clock::time_point deadline =
      hold || config_.duration_s <= 0
          ? clock::time_point::max()
          : start + std::chrono::duration_cast<clock::duration>(
                        std::chrono::duration<double>(config_.duration_s));
  run_control control(hold ? 0 : config_.requests, deadline);

  // One io_context per thread: a client and its stats stay on one thread, so nothing is locked.
  std::vector<std::unique_ptr<net::io_context>> contexts;
  std::vector<run_stats> stats(static_cast<std::size_t>(threads));
  for (int t = 0; t < threads; ++t) contexts.push_back(std::make_unique<net::io_context>(1));

  std::vector<std::unique_ptr<stream_client>> all;
  all.reserve(static_cast<std::size_t>(clients));
  const auto ramp =
      std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(config_.ramp_s));
  for (std::int64_t i = 0; i < clients; ++i) {
    const auto t = static_cast<std::size_t>(i % threads);
    const auto k = static_cast<std::size_t>(i) % config_.targets.size();
    all.push_back(std::make_unique<stream_client>(*contexts[t], config_, config_.targets[k],
                                                  heads[k], body, stats[t], control));
    stream_client& client = *all.back();
    // Nothing in a client is meant to throw; if something does, the client is gone, and that
    // must show in the figures instead of silently shrinking the load (detached would hide it).
    run_stats& thread_stats = stats[t];
    auto on_exit = [&thread_stats](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        std::cerr << "glm-loadgen: a client stopped: " << ex.what() << "\n";
      } catch (...) {
        std::cerr << "glm-loadgen: a client stopped on an unknown exception\n";
      }
      thread_stats.add_error("client_exception", clock::now());
    };
    if (hold) {
      net::co_spawn(*contexts[t], client.run_hold(ramp * i / clients), on_exit);
    } else {
      net::co_spawn(*contexts[t], client.run_closed_loop(), on_exit);
    }
  }

  std::vector<std::thread> workers;
  for (int t = 1; t < threads; ++t) workers.emplace_back([&contexts, t] { contexts[t]->run(); });
  contexts[0]->run();
  for (auto& w : workers) w.join();

  run_result result;
  for (auto& s : stats) result.stats.merge(std::move(s));
  const clock::time_point end =
      result.stats.last_finish() > start ? result.stats.last_finish() : clock::now();
  result.elapsed_s = std::chrono::duration<double>(end - start).count();
  result.max_open = control.max_open();
  return result;
}

}  // namespace glm::loadgen
