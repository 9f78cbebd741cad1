#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "bench/mock_vllm/completion_request.hpp"
#include "bench/mock_vllm/recorded_request.hpp"

namespace glm::mock {

// What tests read back through /mock/requests and /mock/stats. Shared by every session on every
// io_context thread: all members are thread-safe. Outlives the io_context.
class mock_state {
 public:
  // Keeps `request` (dropping the oldest beyond max_records or max_record_bytes of bodies, so a
  // benchmark's memory stays bounded) and returns it, so the caller parses the same bytes.
  std::shared_ptr<const recorded_request> record(recorded_request request);

  void count_role(request_role role);
  void stream_started() { ++active_streams_; }
  void stream_ended() { --active_streams_; }
  void count_client_disconnect() { ++client_disconnects_; }

  // "1", "2", ...: the request id when the client sent no X-Request-Id.
  std::string next_request_id() { return std::to_string(++request_ids_); }

  std::string requests_json() const;
  std::string stats_json() const;

  // Forgets the records and zeroes the counters. active_streams is a gauge of streams still
  // open, so it is left alone: zeroing it would make it negative when they end.
  void reset();

  static constexpr std::size_t max_records = 10'000;
  static constexpr std::size_t max_record_bytes = std::size_t{256} << 20;

 private:
  mutable std::mutex mutex_;
  std::deque<std::shared_ptr<const recorded_request>> records_;  // guarded by mutex_
  std::size_t record_bytes_ = 0;                                 // guarded by mutex_

  std::atomic<std::int64_t> requests_{0};
  std::atomic<std::int64_t> prefill_{0};
  std::atomic<std::int64_t> decode_{0};
  std::atomic<std::int64_t> plain_{0};
  std::atomic<std::int64_t> active_streams_{0};
  std::atomic<std::int64_t> client_disconnects_{0};
  std::atomic<std::uint64_t> request_ids_{0};
};

}  // namespace glm::mock
