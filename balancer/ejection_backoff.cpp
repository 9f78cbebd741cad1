#include "balancer/ejection_backoff.hpp"

#include <algorithm>

namespace glm::balancer {

std::chrono::milliseconds ejection_backoff::duration(int level, std::chrono::milliseconds base,
                                                     std::chrono::milliseconds cap) {
  cap = std::max(cap, base);
  auto d = base;
  // Doubling stops at the cap, so no level, however high, overflows.
  for (int k = 1; k < level && d < cap; ++k) d *= 2;
  return std::min(d, cap);
}

std::chrono::milliseconds ejection_backoff::eject(time_point now, bool after_probe,
                                                  std::chrono::milliseconds base,
                                                  std::chrono::milliseconds cap) {
  // A failed probe continues the run of ejections; an instance that then stayed in rotation for
  // as long as its last ejection has proven itself, and starts over at the base time.
  if (!after_probe && level_ > 0 && now - back_since_ >= last_) level_ = 0;
  ++level_;
  last_ = duration(level_, base, cap);
  ++total_;
  return last_;
}

}  // namespace glm::balancer
