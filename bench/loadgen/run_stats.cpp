#include "bench/loadgen/run_stats.hpp"

#include <algorithm>
#include <cmath>

namespace glm::loadgen {
namespace {

float to_us(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<float, std::micro>(d).count();
}

}  // namespace

void run_stats::keep(std::vector<float>& into, float value) {
  if (into.size() >= max_samples) {
    ++dropped_;
    return;
  }
  into.push_back(value);
}

void run_stats::add_ok(clock::duration ttft, const std::vector<float>& gaps_us,
                       clock::duration total, std::int64_t tokens, clock::time_point finished) {
  ++ok_;
  tokens_ += tokens;
  keep(ttft_us_, to_us(ttft));
  keep(total_us_, to_us(total));
  for (const float gap : gaps_us) keep(gap_us_, gap);
  last_finish_ = std::max(last_finish_, finished);
}

void run_stats::add_error(std::string_view kind, clock::time_point finished) {
  ++errors_;
  ++error_kinds_[std::string(kind)];
  last_finish_ = std::max(last_finish_, finished);
}

void run_stats::add_usage(std::int64_t prompt_tokens, std::int64_t cached_tokens) {
  if (prompt_tokens < 0) {
    ++usage_missing_;
    return;
  }
  prompt_tokens_ += prompt_tokens;
  cached_tokens_ += cached_tokens > 0 ? cached_tokens : 0;
}

void run_stats::merge(run_stats&& other) {
  ok_ += other.ok_;
  prompt_tokens_ += other.prompt_tokens_;
  cached_tokens_ += other.cached_tokens_;
  usage_missing_ += other.usage_missing_;
  skipped_turns_ += other.skipped_turns_;
  errors_ += other.errors_;
  tokens_ += other.tokens_;
  dropped_ += other.dropped_;
  for (const auto& [kind, n] : other.error_kinds_) error_kinds_[kind] += n;
  auto append = [this](std::vector<float>& into, const std::vector<float>& from) {
    for (const float v : from) keep(into, v);
  };
  append(ttft_us_, other.ttft_us_);
  append(gap_us_, other.gap_us_);
  append(total_us_, other.total_us_);
  last_finish_ = std::max(last_finish_, other.last_finish_);
}

double run_stats::percentile_ms(std::vector<float>& samples, double p) {
  if (samples.empty()) return 0;
  // Nearest rank: the smallest sample with at least p% of the samples at or below it.
  const double rank = std::ceil(p / 100.0 * static_cast<double>(samples.size()));
  const std::size_t index =
      static_cast<std::size_t>(std::clamp(rank, 1.0, static_cast<double>(samples.size()))) - 1;
  std::nth_element(samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(index),
                   samples.end());
  return samples[index] / 1000.0;
}

}  // namespace glm::loadgen
