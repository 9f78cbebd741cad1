#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace glm::loadgen {

// What every client of a run shares, across threads: the tickets that bound the request count,
// the deadline that bounds the time, and the gauge of streams open at once. Lock-free; owned by
// load_run and outliving every client.
class run_control {
 public:
  using clock = std::chrono::steady_clock;

  run_control(std::int64_t max_requests, clock::time_point deadline)
      : max_requests_(max_requests), deadline_(deadline) {}

  // True while a client may start another request: a ticket is left (if counted) and the
  // deadline has not passed. Every attempt, failed ones too, spends a ticket, so a dead target
  // cannot make the run loop forever.
  bool take_ticket() {
    if (clock::now() >= deadline_) return false;
    if (max_requests_ <= 0) return true;
    return issued_.fetch_add(1, std::memory_order_relaxed) < max_requests_;
  }

  void stream_opened() {
    const std::int64_t now_open = open_.fetch_add(1, std::memory_order_relaxed) + 1;
    std::int64_t seen = max_open_.load(std::memory_order_relaxed);
    while (now_open > seen && !max_open_.compare_exchange_weak(seen, now_open)) {
    }
  }
  void stream_closed() { open_.fetch_sub(1, std::memory_order_relaxed); }
  std::int64_t max_open() const { return max_open_.load(); }

 private:
  const std::int64_t max_requests_;  // 0: no count limit
  const clock::time_point deadline_;
  std::atomic<std::int64_t> issued_{0};
  std::atomic<std::int64_t> open_{0};
  std::atomic<std::int64_t> max_open_{0};
};

}  // namespace glm::loadgen
