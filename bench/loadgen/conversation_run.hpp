#pragma once

#include "bench/loadgen/load_run.hpp"
#include "bench/loadgen/loadgen_config.hpp"

namespace glm::loadgen {

// The multi-turn workload: config.conversations conversations of config.turns turns, at most
// config.clients conversations at once, the turns of one conversation strictly in order (a turn
// needs the previous answer). Turn t of conversation k goes to target (k + t) % targets, so with
// two proxy replicas a conversation's turns alternate between them. A failed turn ends its
// conversation (its later turns are counted as skipped). Bounded by conversations x turns
// requests, each by its timeout.
class conversation_run {
 public:
  explicit conversation_run(const loadgen_config& config) : config_(config) {}
  run_result run();

 private:
  const loadgen_config& config_;
};

}  // namespace glm::loadgen
