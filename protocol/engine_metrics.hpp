#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace glm::protocol {

// Why a vLLM /metrics body gave no usable sample. The proxy counts a scrape error per value
// (glm_proxy_backend_scrape_errors_total) and logs the name from to_string().
enum class engine_metrics_error : std::uint8_t {
  none = 0,
  not_prometheus_text,  // a line that is neither blank, a comment, nor a sample (HTML, JSON, ...)
  malformed_sample,     // a line of a family we read whose labels or value do not parse
  bad_value,            // NaN, +-Inf, negative, not a fraction where one is due, or past a bound
  missing_running,      // no vllm:num_requests_running sample
  missing_waiting,      // no vllm:num_requests_waiting sample
  missing_kv_usage,     // neither vllm:kv_cache_usage_perc nor vllm:gpu_cache_usage_perc
};

// "ok", "not_prometheus_text", "malformed_sample", "bad_value", "missing_running",
// "missing_waiting", "missing_kv_usage": fit for a metric label and a log line.
std::string_view to_string(engine_metrics_error error);

// How parse() ended. On failure, `offset` is the byte offset in the body of the line at fault
// (the body's size for a missing family), so a log line can quote it.
struct engine_metrics_status {
  engine_metrics_error error = engine_metrics_error::none;
  std::size_t offset = 0;

  bool ok() const { return error == engine_metrics_error::none; }
};

// The load an engine reports on its Prometheus /metrics, as vLLM (V1 engine) exposes it:
//
//   vllm:num_requests_running{model_name="m",engine="0"} 3.0
//   vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.41
//   vllm:cache_config_info{block_size="16",...,num_gpu_blocks="27356",...,engine="0"} 1.0
//
// One vLLM server with data parallelism has one series per engine (DP rank), told apart by the
// `engine` label; the fields below combine them as stated on each.
struct engine_metrics {
  // vllm:num_requests_running and vllm:num_requests_waiting, summed over every series: the
  // server's own queue, whichever rank holds each request. Each series' value is rounded to the
  // nearest whole number and must lie in [0, max_requests_per_series].
  std::uint64_t running = 0;
  std::uint64_t waiting = 0;
  // The largest vllm:kv_cache_usage_perc over the series, a fraction in [0, 1]. The max, not the
  // mean: each rank has its own KV cache, vLLM's DP balancer places a request by queue length,
  // not by free blocks, so a request may land on the full rank and preempt there; an idle rank
  // must not hide a full one from the saturation veto. The max is also unaffected by a series
  // repeated under another label (prometheus_client's multiprocess mode adds a `pid` label to
  // this gauge). Older vLLM (before 0.9) only has vllm:gpu_cache_usage_perc, read the same way
  // and used only when vllm:kv_cache_usage_perc has no sample.
  double kv_usage = 0;
  bool kv_usage_legacy = false;  // kv_usage came from vllm:gpu_cache_usage_perc
  // The number of vllm:num_requests_running series: the server's engines (DP ranks).
  std::uint32_t engines = 0;
  // From vllm:cache_config_info's labels, for sizing a prefix index (blocks x tokens per block).
  // block_size: the largest over the series' block_size labels, 0 when there is no such series.
  // num_gpu_blocks: summed over the series (each rank has its own cache); 0 when there is no
  // series or any series says "None" (the count is not known before the engine has profiled).
  // The family is optional: its absence is not an error, a bad value in it is.
  std::uint32_t block_size = 0;
  std::uint64_t num_gpu_blocks = 0;

  static constexpr double max_requests_per_series = 1e6;
  static constexpr std::uint64_t max_block_size = std::uint64_t(1) << 20;
  static constexpr std::uint64_t max_gpu_blocks_per_series = std::uint64_t(1) << 32;

  // Reads a /metrics body in the Prometheus text exposition format (version 0.0.4; OpenMetrics'
  // "# EOF" and _created lines are comments and samples like any other). Only the families named
  // above are parsed; every other line is skipped after a look at its first bytes, so a body of
  // about 100 KB costs tens of microseconds (bench/micro/engine_metrics_bench.cpp).
  //
  // Accepted: "\n" or "\r\n" line ends, a last line without one, blank lines and leading blanks,
  // "# HELP"/"# TYPE"/any comment, label values with \\, \" and \n escapes (and "}", "," or
  // blanks inside the quotes), labels in any order, a trailing comma in a label set, values as
  // Go prints them ("3", "3.0", "1e+06", "+Inf", "NaN") followed by an optional timestamp.
  //
  // Bad input is a value, never an exception or a crash: on failure `out` is left unchanged and
  // the status says why and where. The first fault found wins; a family's value is checked only
  // once its line is reached, so a bad value is reported even when a missing family would also be.
  //
  // No allocation; `body` need not outlive the call. Thread-safe (no shared state).
  //
  // For the scraper that fetches the body: ask with `Accept: text/plain` and no
  // `Accept-Encoding` (prometheus_client answers gzip or OpenMetrics only when asked), and cap
  // what it buffers. A vLLM body holds about 36 KB per engine plus 22 KB of other families
  // (tests/unit/fixtures/vllm_metrics_dp2.txt is 94 KB for 2 engines), so 32 engines is about
  // 1.2 MB and a cap of 16 MiB fits more than 400; a body cut at the cap must be refused as a
  // whole (a cut line could read as a smaller number), not passed here.
  static engine_metrics_status parse(std::string_view body, engine_metrics& out);
};

}  // namespace glm::protocol
