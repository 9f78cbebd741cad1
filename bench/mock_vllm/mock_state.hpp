#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "bench/mock_vllm/completion_request.hpp"
#include "bench/mock_vllm/metaserver_client.hpp"
#include "bench/mock_vllm/mock_config.hpp"
#include "bench/mock_vllm/prefill_gate.hpp"
#include "bench/mock_vllm/prefix_cache.hpp"
#include "bench/mock_vllm/recorded_request.hpp"
#include "bench/mock_vllm/vllm_metrics.hpp"

namespace glm::mock {

// One metaserver call of the layerwise decoder, for /mock/stats.
struct metaserver_call {
  std::string request_id;
  std::string url;
  std::string body;
  metaserver_answer answer;
};

// Load injected through POST /mock/load, added to the instance's own on /metrics.
struct injected_load {
  double running = 0;
  double waiting = 0;
  std::optional<double> kv_usage;  // replaces the instance's own figure when set
};

// The instance's shared state: what tests read back through /mock/requests, /mock/stats and
// /metrics, the simulated prefix cache and the prefill gate. Shared by every session on every
// io_context thread: all members are thread-safe. Owned by mock_server; outlives the io_context.
class mock_state {
 public:
  explicit mock_state(const mock_config& config);

  // Keeps `request` (dropping the oldest beyond max_records or max_record_bytes of bodies, so a
  // benchmark's memory stays bounded) and returns it, so the caller parses the same bytes.
  std::shared_ptr<const recorded_request> record(recorded_request request);

  void count_role(request_role role);
  void stream_started() { ++active_streams_; }
  void stream_ended() { --active_streams_; }
  void count_client_disconnect() { ++client_disconnects_; }
  void count_metrics_request() { ++metrics_requests_; }

  // A prefill (or a plain instance's own prefill) finished: its usage figures and duration.
  void count_prefill(std::int64_t prompt_tokens, std::int64_t cached_tokens,
                     std::chrono::steady_clock::duration took);
  // A generation ended with all its tokens (a 200 that completed).
  void count_generation(std::int64_t tokens);

  // A layerwise decode request's metaserver call ended (answered or given up).
  void record_metaserver_call(metaserver_call call);
  // Distinct KV block ids for the remote_block_ids a layerwise decoder posts.
  std::int64_t allocate_blocks(std::int64_t n) { return next_block_ += n; }

  // Requests the instance is working on (prefilling or generating), for /metrics' running count
  // and KV usage. Held as an RAII token for the length of the work.
  class busy {
   public:
    busy(mock_state& state, std::int64_t blocks);
    busy(const busy&) = delete;
    busy& operator=(const busy&) = delete;
    ~busy();

   private:
    mock_state& state_;
    std::int64_t blocks_;
  };

  prefix_cache& cache() { return cache_; }
  prefill_gate& gate() { return gate_; }

  // "1", "2", ...: the request id when the client sent no X-Request-Id.
  std::string next_request_id() { return std::to_string(++request_ids_); }

  std::string requests_json() const;
  std::string stats_json() const;

  // POST /mock/load; GET /metrics.
  void inject(const injected_load& load);
  void set_metrics_fault(metrics_fault fault) { metrics_fault_ = fault; }
  metrics_fault current_metrics_fault() const { return metrics_fault_.load(); }
  vllm_metrics::snapshot metrics_snapshot() const;

  // Forgets the records, zeroes the counters, drops the injected load and sets the /metrics
  // fault back to the command line's. Gauges of work still in progress (active_streams, running)
  // are left alone: zeroing them would make them negative when that work ends. The prefix cache
  // is not touched: POST /reset_prefix_cache empties it.
  void reset();

  static constexpr std::size_t max_records = 10'000;
  static constexpr std::size_t max_record_bytes = std::size_t{256} << 20;
  static constexpr std::size_t max_metaserver_calls = 10'000;

 private:
  const mock_config& config_;
  prefix_cache cache_;
  prefill_gate gate_;
  metrics_fault initial_fault_;

  mutable std::mutex mutex_;
  std::deque<std::shared_ptr<const recorded_request>> records_;  // guarded by mutex_
  std::size_t record_bytes_ = 0;                                 // guarded by mutex_
  injected_load injected_;                                       // guarded by mutex_
  std::array<std::int64_t, 23> ttft_counts_{};                   // guarded by mutex_
  std::deque<metaserver_call> metaserver_calls_;                 // guarded by mutex_
  std::int64_t metaserver_failed_ = 0;                           // guarded by mutex_
  double ttft_sum_ = 0;                                          // guarded by mutex_

  std::atomic<std::int64_t> requests_{0};
  std::atomic<std::int64_t> prefill_{0};
  std::atomic<std::int64_t> decode_{0};
  std::atomic<std::int64_t> plain_{0};
  std::atomic<std::int64_t> active_streams_{0};
  std::atomic<std::int64_t> client_disconnects_{0};
  std::atomic<std::int64_t> metrics_requests_{0};
  std::atomic<std::int64_t> prefills_done_{0};
  std::atomic<std::int64_t> prompt_tokens_{0};
  std::atomic<std::int64_t> cached_tokens_{0};
  std::atomic<std::int64_t> generation_tokens_{0};
  std::atomic<std::int64_t> generations_done_{0};
  std::atomic<std::int64_t> busy_requests_{0};
  std::atomic<std::int64_t> busy_blocks_{0};
  std::atomic<metrics_fault> metrics_fault_{metrics_fault::none};
  std::atomic<std::uint64_t> request_ids_{0};
  std::atomic<std::int64_t> next_block_{0};
};

}  // namespace glm::mock
