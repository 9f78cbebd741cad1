#pragma once

#include <chrono>
#include <cstdint>

#include "bench/loadgen/loadgen_config.hpp"
#include "bench/loadgen/run_stats.hpp"

namespace glm::loadgen {

// What a finished run measured.
struct run_result {
  run_stats stats;            // every thread's, merged
  double elapsed_s = 0;       // first request sent to last request ended
  std::int64_t max_open = 0;  // most streams open at the same moment
};

// Runs the clients the config asks for, on config.threads io_context threads, and waits for them
// all. Bounded: the closed loop by --requests and --duration, every request by its timeout,
// hold mode by one request per client.
class load_run {
 public:
  explicit load_run(const loadgen_config& config) : config_(config) {}
  run_result run();

 private:
  const loadgen_config& config_;
};

}  // namespace glm::loadgen
