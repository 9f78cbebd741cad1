#include "bench/loadgen/conversation_run.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "bench/loadgen/conversation.hpp"
#include "bench/loadgen/run_control.hpp"
#include "bench/loadgen/stream_client.hpp"

namespace glm::loadgen {

namespace net = boost::asio;

namespace {

// One of the `clients` workers: takes the next conversation not yet started, runs all its turns,
// and so on. `clients` holds one stream_client (keep-alive connection) per target.
net::awaitable<void> worker(const loadgen_config& config, std::vector<stream_client*> clients,
                            std::atomic<std::int64_t>& next, run_stats& stats) {
  for (;;) {
    const std::int64_t k = next.fetch_add(1);
    if (k >= config.conversations) co_return;
    conversation talk(config, k);
    for (std::int64_t t = 0; t < config.turns; ++t) {
      const std::size_t to = static_cast<std::size_t>(k + t) % clients.size();
      const std::string body = talk.next_turn_body();
      const std::string head = talk.head(config.targets[to], body.size());
      const stream_client::turn_result got = co_await clients[to]->run_turn(head, body);
      if (!got.ok) {
        stats.add_skipped_turns(config.turns - t - 1);
        break;
      }
      talk.add_answer(got.text);
    }
  }
}

}  // namespace

run_result conversation_run::run() {
  using clock = std::chrono::steady_clock;
  const int threads = std::max(1, config_.threads);
  const std::int64_t workers = std::min<std::int64_t>(config_.clients, config_.conversations);
  const clock::time_point start = clock::now();
  // No ticket limit and no deadline: conversations x turns bounds the run.
  run_control control(0, clock::time_point::max());
  std::atomic<std::int64_t> next{0};

  std::vector<std::unique_ptr<net::io_context>> contexts;
  std::vector<run_stats> stats(static_cast<std::size_t>(threads));
  for (int t = 0; t < threads; ++t) contexts.push_back(std::make_unique<net::io_context>(1));

  // A turn's request bytes live in the worker's frame; the clients need none of their own.
  std::vector<std::unique_ptr<stream_client>> all;
  for (std::int64_t w = 0; w < workers; ++w) {
    const auto t = static_cast<std::size_t>(w % threads);
    std::vector<stream_client*> mine;
    for (const target& to : config_.targets) {
      all.push_back(
          std::make_unique<stream_client>(*contexts[t], config_, to, "", "", stats[t], control));
      mine.push_back(all.back().get());
    }
    run_stats& thread_stats = stats[t];
    net::co_spawn(*contexts[t], worker(config_, std::move(mine), next, thread_stats),
                  [&thread_stats](std::exception_ptr e) {
                    if (!e) return;
                    try {
                      std::rethrow_exception(e);
                    } catch (const std::exception& ex) {
                      std::cerr << "glm-loadgen: a conversation worker stopped: " << ex.what()
                                << "\n";
                    } catch (...) {
                      std::cerr << "glm-loadgen: a conversation worker stopped\n";
                    }
                    thread_stats.add_error("client_exception", clock::now());
                  });
  }

  std::vector<std::thread> runners;
  for (int t = 1; t < threads; ++t) runners.emplace_back([&contexts, t] { contexts[t]->run(); });
  contexts[0]->run();
  for (auto& r : runners) r.join();

  run_result result;
  for (auto& s : stats) result.stats.merge(std::move(s));
  const clock::time_point end =
      result.stats.last_finish() > start ? result.stats.last_finish() : clock::now();
  result.elapsed_s = std::chrono::duration<double>(end - start).count();
  result.max_open = control.max_open();
  return result;
}

}  // namespace glm::loadgen
