#pragma once

#include <chrono>
#include <cstdint>

namespace glm::balancer {

// How long an instance stays ejected. The k-th ejection in a row lasts base * 2^(k-1), capped at
// max(cap, base); k starts over at 1 once the instance has stayed in rotation for at least as long
// as its last ejection, so an instance that fails once a day is not punished for last week's
// outage. A failed probe continues the run. Pure: time comes in as arguments.
class ejection_backoff {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  static std::chrono::milliseconds duration(int level, std::chrono::milliseconds base,
                                            std::chrono::milliseconds cap);

  // Records an ejection at `now` and returns how long it lasts.
  std::chrono::milliseconds eject(time_point now, bool after_probe, std::chrono::milliseconds base,
                                  std::chrono::milliseconds cap);
  // The instance is back in rotation from `now` (its probe succeeded).
  void back(time_point now) { back_since_ = now; }

  std::uint64_t total() const { return total_; }

 private:
  int level_ = 0;  // k of the last ejection
  time_point back_since_{};
  std::chrono::milliseconds last_{0};
  std::uint64_t total_ = 0;
};

}  // namespace glm::balancer
