#include "balancer/engine_load.hpp"

namespace glm::balancer {

void engine_load::on_sample(const engine_sample& sample) {
  failures_in_row_ = 0;
  if (last_ && sample.taken < last_->taken) return;
  last_ = sample;
}

std::optional<engine_sample> engine_load::fresh_sample(time_point now) const {
  if (!last_ || opts_.interval.count() <= 0) return std::nullopt;
  if (now > last_->taken && now - last_->taken > max_age()) return std::nullopt;
  return last_;
}

std::optional<std::chrono::nanoseconds> engine_load::sample_age(time_point now) const {
  if (!last_) return std::nullopt;
  if (now <= last_->taken) return std::chrono::nanoseconds(0);
  return std::chrono::duration_cast<std::chrono::nanoseconds>(now - last_->taken);
}

std::uint64_t engine_load::external_load(std::uint64_t own, time_point now) const {
  std::optional<engine_sample> sample = fresh_sample(now);
  if (!sample) return 0;
  std::uint64_t reported = sample->queued();
  return reported > own ? reported - own : 0;
}

bool engine_load::saturated(time_point now) const {
  std::optional<engine_sample> sample = fresh_sample(now);
  return sample && sample->kv_usage >= opts_.kv_high;
}

}  // namespace glm::balancer
