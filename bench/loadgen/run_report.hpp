#pragma once

#include <ostream>

#include "bench/loadgen/load_run.hpp"
#include "bench/loadgen/loadgen_config.hpp"

namespace glm::loadgen {

// Prints a run's figures: a table for people, and one line "RESULT {json}" for bench/run_bench.sh.
class run_report {
 public:
  run_report(const loadgen_config& config, run_result& result) : config_(config), result_(result) {}

  void print_table(std::ostream& out);
  void print_json(std::ostream& out);
  // Conversation mode: sum of cached_tokens / sum of prompt_tokens over the usage chunks.
  double hit_ratio() const;

 private:
  const loadgen_config& config_;
  run_result& result_;  // percentiles reorder its samples
};

}  // namespace glm::loadgen
