#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace glm::loadgen {

// The figures of one thread's clients, merged into one at the end of a run. Samples are kept
// whole (a float per token gap) so percentiles are exact; past max_samples further ones are
// dropped and counted, which bounds memory on a long --duration run. Not thread-safe: each
// io_context thread owns one.
class run_stats {
 public:
  using clock = std::chrono::steady_clock;

  void add_ok(clock::duration ttft, const std::vector<float>& gaps_us, clock::duration total,
              std::int64_t tokens, clock::time_point finished);
  void add_error(std::string_view kind, clock::time_point finished);
  // A good answer's usage chunk: prompt_tokens < 0 means it had none (counted apart).
  void add_usage(std::int64_t prompt_tokens, std::int64_t cached_tokens);
  // Turns of a conversation never sent because an earlier turn failed.
  void add_skipped_turns(std::int64_t n) { skipped_turns_ += n; }
  void merge(run_stats&& other);

  std::int64_t ok() const { return ok_; }
  std::int64_t errors() const { return errors_; }
  std::int64_t tokens() const { return tokens_; }
  std::int64_t dropped_samples() const { return dropped_; }
  const std::map<std::string, std::int64_t>& error_kinds() const { return error_kinds_; }
  std::int64_t prompt_tokens() const { return prompt_tokens_; }
  std::int64_t cached_tokens() const { return cached_tokens_; }
  std::int64_t usage_missing() const { return usage_missing_; }
  std::int64_t skipped_turns() const { return skipped_turns_; }
  // When the last request (good or bad) ended; the epoch if none did.
  clock::time_point last_finish() const { return last_finish_; }

  // Nearest-rank percentile (p in [0, 100]) in milliseconds; 0 if there is no sample. Reorders
  // the samples, hence not const.
  double ttft_ms(double p) { return percentile_ms(ttft_us_, p); }
  double gap_ms(double p) { return percentile_ms(gap_us_, p); }
  double total_ms(double p) { return percentile_ms(total_us_, p); }

  static constexpr std::size_t max_samples = 50'000'000;

 private:
  static double percentile_ms(std::vector<float>& samples, double p);
  void keep(std::vector<float>& into, float value);

  std::int64_t ok_ = 0;
  std::int64_t errors_ = 0;
  std::int64_t tokens_ = 0;
  std::int64_t dropped_ = 0;
  std::int64_t prompt_tokens_ = 0;
  std::int64_t cached_tokens_ = 0;
  std::int64_t usage_missing_ = 0;
  std::int64_t skipped_turns_ = 0;
  std::map<std::string, std::int64_t> error_kinds_;
  std::vector<float> ttft_us_;
  std::vector<float> gap_us_;
  std::vector<float> total_us_;
  clock::time_point last_finish_{};
};

}  // namespace glm::loadgen
