#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace glm::mock {

// How GET /metrics misbehaves, for the proxy's scraper tests.
enum class metrics_fault {
  none,
  status_500,  // 500 with a text body
  hang,        // never answers; the connection stays open until the peer leaves
  garbage,     // 200 whose body is not Prometheus text
  nan,         // the load gauges read NaN
  missing,     // no vllm:num_requests_* and no KV-usage family at all
  huge,        // a valid body padded past 8 MiB, beyond any real engine's
};

// GET /metrics in the shape vLLM's prometheus_client writes it: "# HELP" and "# TYPE" lines,
// labels sorted by name, every value a float ("3.0"), histogram buckets with "le" then _count and
// _sum, the vllm:* families of a V1 engine with one label set per engine (DP rank), among
// process and Python families a scraper must skip. Pure: the numbers come in a snapshot.
class vllm_metrics {
 public:
  struct engine_load {
    double running = 0;
    double waiting = 0;
    double kv_usage = 0;  // 0..1
  };

  struct snapshot {
    std::string model;
    std::vector<engine_load> engines;  // engine="0", "1", ...; counters all go to engine 0
    std::int64_t block_size = 16;
    std::int64_t num_gpu_blocks = 0;
    bool prefix_caching = false;
    double prompt_tokens = 0;
    double generation_tokens = 0;
    double prefix_queries = 0;  // tokens looked up in the prefix cache
    double prefix_hits = 0;     // tokens found there
    double request_success = 0;
    std::array<std::int64_t, 23> ttft_counts{};  // per bucket of ttft_buckets, then +Inf
    double ttft_sum = 0;
  };

  // vLLM's time-to-first-token buckets (seconds).
  static constexpr std::array<double, 22> ttft_buckets = {
      0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25, 0.5,  0.75,
      1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160., 640., 2560.};

  // The body for `fault` none, nan, missing or huge.
  static std::string render(const snapshot& s, metrics_fault fault);

  // "", "none", "500", "hang", "garbage", "nan", "missing", "huge".
  static std::optional<metrics_fault> parse_fault(std::string_view name);
  static std::string_view fault_name(metrics_fault fault);

  // A float as Python's repr writes it: "3.0", "0.25", "1e-05", "NaN", "+Inf".
  static std::string number(double v);
};

}  // namespace glm::mock
