#include "bench/mock_vllm/vllm_metrics.hpp"

#include <charconv>
#include <cmath>

namespace glm::mock {
namespace {

// One label set, sorted by name as prometheus_client writes them; `extra` is inserted where it
// sorts ("finished_reason" before "model_name", "le" between "engine" and "model_name").
std::string labels(std::size_t engine, std::string_view model, std::string_view extra = {}) {
  std::string out = "{engine=\"" + std::to_string(engine) + "\"";
  if (!extra.empty()) out += "," + std::string(extra);
  // A label value is a JSON-like quoted string: backslash, quote and newline are escaped.
  std::string quoted;
  for (const char c : model) {
    if (c == '\\' || c == '"') quoted += '\\';
    if (c == '\n') {
      quoted += "\\n";
      continue;
    }
    quoted += c;
  }
  out += ",model_name=\"" + quoted + "\"}";
  return out;
}

void family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void sample(std::string& out, std::string_view name, const std::string& label_set, double v) {
  out += name;
  out += label_set;
  out += ' ';
  out += vllm_metrics::number(v);
  out += '\n';
}

// What a Python process exports before vLLM's own families; a scraper must skip it.
void process_families(std::string& out) {
  family(out, "python_gc_objects_collected_total", "counter", "Objects collected during gc");
  out += "python_gc_objects_collected_total{generation=\"0\"} 12873.0\n";
  out += "python_gc_objects_collected_total{generation=\"1\"} 3211.0\n";
  out += "python_gc_objects_collected_total{generation=\"2\"} 407.0\n";
  family(out, "python_info", "gauge", "Python platform information");
  out +=
      "python_info{implementation=\"CPython\",major=\"3\",minor=\"12\",patchlevel=\"3\","
      "version=\"3.12.3\"} 1.0\n";
  family(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
  out += "process_virtual_memory_bytes 3.2418848768e+10\n";
  family(out, "process_cpu_seconds_total", "counter",
         "Total user and system CPU time spent in seconds.");
  out += "process_cpu_seconds_total 81.27\n";
}

}  // namespace

std::string vllm_metrics::number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  std::string out(buf, end);
  if (out.find_first_of(".e") == std::string::npos) out += ".0";
  return out;
}

std::string vllm_metrics::render(const snapshot& s, metrics_fault fault) {
  std::string out;
  out.reserve(8192);
  process_families(out);
  const std::size_t n = s.engines.size();
  auto per_engine = [&](std::string_view name, std::string_view type, std::string_view help,
                        auto value) {
    family(out, name, type, help);
    for (std::size_t e = 0; e < n; ++e) sample(out, name, labels(e, s.model), value(e));
  };
  const double nan = std::nan("");
  if (fault != metrics_fault::missing) {
    per_engine(
        "vllm:num_requests_running", "gauge", "Number of requests in model execution batches.",
        [&](std::size_t e) { return fault == metrics_fault::nan ? nan : s.engines[e].running; });
    per_engine(
        "vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
        [&](std::size_t e) { return fault == metrics_fault::nan ? nan : s.engines[e].waiting; });
    per_engine(
        "vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.",
        [&](std::size_t e) { return fault == metrics_fault::nan ? nan : s.engines[e].kv_usage; });
  }
  per_engine("vllm:prefix_cache_queries_total", "counter",
             "Prefix cache queries, in terms of number of queried tokens.",
             [&](std::size_t e) { return e == 0 ? s.prefix_queries : 0.0; });
  per_engine("vllm:prefix_cache_hits_total", "counter",
             "Prefix cache hits, in terms of number of cached tokens.",
             [&](std::size_t e) { return e == 0 ? s.prefix_hits : 0.0; });
  per_engine("vllm:num_preemptions_total", "counter",
             "Cumulative number of preemption from the engine.", [](std::size_t) { return 0.0; });
  per_engine("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.",
             [&](std::size_t e) { return e == 0 ? s.prompt_tokens : 0.0; });
  per_engine("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.",
             [&](std::size_t e) { return e == 0 ? s.generation_tokens : 0.0; });

  family(out, "vllm:request_success_total", "counter", "Count of successfully processed requests.");
  for (std::size_t e = 0; e < n; ++e) {
    for (std::string_view reason : {"abort", "length", "stop"}) {
      const double v = e == 0 && reason == "length" ? s.request_success : 0.0;
      sample(out, "vllm:request_success_total",
             labels(e, s.model, "finished_reason=\"" + std::string(reason) + "\""), v);
    }
  }

  constexpr std::string_view ttft = "vllm:time_to_first_token_seconds";
  family(out, ttft, "histogram", "Histogram of time to first token in seconds.");
  for (std::size_t e = 0; e < n; ++e) {
    std::int64_t cumulative = 0;
    for (std::size_t b = 0; b <= ttft_buckets.size(); ++b) {
      if (e == 0) cumulative += s.ttft_counts[b];
      const std::string le = b < ttft_buckets.size() ? number(ttft_buckets[b]) : "+Inf";
      sample(out, std::string(ttft) + "_bucket", labels(e, s.model, "le=\"" + le + "\""),
             static_cast<double>(cumulative));
    }
    sample(out, std::string(ttft) + "_count", labels(e, s.model), static_cast<double>(cumulative));
    sample(out, std::string(ttft) + "_sum", labels(e, s.model), e == 0 ? s.ttft_sum : 0.0);
  }

  family(out, "vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig");
  for (std::size_t e = 0; e < n; ++e) {
    out += "vllm:cache_config_info{block_size=\"" + std::to_string(s.block_size) +
           "\",cache_dtype=\"auto\",calculate_kv_scales=\"False\",cpu_offload_gb=\"0\","
           "enable_prefix_caching=\"" +
           (s.prefix_caching ? "True" : "False") + "\",engine=\"" + std::to_string(e) +
           "\",gpu_memory_utilization=\"0.9\",is_attention_free=\"False\","
           "num_cpu_blocks=\"None\",num_gpu_blocks=\"" +
           std::to_string(s.num_gpu_blocks) +
           "\",num_gpu_blocks_override=\"None\",prefix_caching_hash_algo=\"builtin\","
           "sliding_window=\"None\",swap_space=\"4\",swap_space_bytes=\"4294967296\"} 1.0\n";
  }

  if (fault == metrics_fault::huge) {
    // Valid text, far larger than a real engine's (~100 KB): a scraper must cap what it buffers.
    constexpr std::size_t target = std::size_t{8} << 20;
    family(out, "mock:padding", "gauge", "Series no real vLLM has, to make the body large.");
    for (std::size_t i = 0; out.size() < target + 1024; ++i) {
      out += "mock:padding{series=\"" + std::to_string(i) + "\"} 0.0\n";
    }
  }
  return out;
}

std::optional<metrics_fault> vllm_metrics::parse_fault(std::string_view name) {
  if (name.empty() || name == "none") return metrics_fault::none;
  if (name == "500") return metrics_fault::status_500;
  if (name == "hang") return metrics_fault::hang;
  if (name == "garbage") return metrics_fault::garbage;
  if (name == "nan") return metrics_fault::nan;
  if (name == "missing") return metrics_fault::missing;
  if (name == "huge") return metrics_fault::huge;
  return std::nullopt;
}

std::string_view vllm_metrics::fault_name(metrics_fault fault) {
  switch (fault) {
    case metrics_fault::none:
      return "none";
    case metrics_fault::status_500:
      return "500";
    case metrics_fault::hang:
      return "hang";
    case metrics_fault::garbage:
      return "garbage";
    case metrics_fault::nan:
      return "nan";
    case metrics_fault::missing:
      return "missing";
    case metrics_fault::huge:
      return "huge";
  }
  return "none";
}

}  // namespace glm::mock
