#include "protocol/engine_metrics.hpp"

#include <charconv>
#include <cmath>
#include <cstring>
#include <system_error>

namespace glm::protocol {

std::string_view to_string(engine_metrics_error error) {
  switch (error) {
    case engine_metrics_error::none:
      return "ok";
    case engine_metrics_error::not_prometheus_text:
      return "not_prometheus_text";
    case engine_metrics_error::malformed_sample:
      return "malformed_sample";
    case engine_metrics_error::bad_value:
      return "bad_value";
    case engine_metrics_error::missing_running:
      return "missing_running";
    case engine_metrics_error::missing_waiting:
      return "missing_waiting";
    case engine_metrics_error::missing_kv_usage:
      return "missing_kv_usage";
  }
  return "unknown";
}

namespace {

// The families parse() reads. Everything else is skipped by its first bytes.
enum class family : std::uint8_t { other, running, waiting, kv_usage, gpu_usage, cache_config };

constexpr std::string_view vllm_prefix = "vllm:";

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

bool is_label_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// The family a sample line belongs to, from the metric name at its start; `name_len` is set to
// the name's length when the family is one we read. The name must end the token ('{' or a blank
// follows), so vllm:num_requests_running_foo is not vllm:num_requests_running.
family classify(std::string_view line, std::size_t& name_len) {
  // Most lines of a vLLM body are histogram buckets of vllm: families; one byte after the prefix
  // rules almost all of them out before any longer compare.
  if (line.size() <= vllm_prefix.size() + 1 ||
      std::memcmp(line.data(), vllm_prefix.data(), vllm_prefix.size()) != 0) {
    return family::other;
  }
  auto is = [&](std::string_view name) {
    if (line.size() < name.size() || std::memcmp(line.data(), name.data(), name.size()) != 0) {
      return false;
    }
    // A bare name (no value) is still that family's line, and malformed.
    if (line.size() > name.size() && line[name.size()] != '{' && !is_blank(line[name.size()])) {
      return false;
    }
    name_len = name.size();
    return true;
  };
  switch (line[vllm_prefix.size()]) {
    case 'n':
      if (is("vllm:num_requests_running")) return family::running;
      if (is("vllm:num_requests_waiting")) return family::waiting;
      return family::other;
    case 'k':
      return is("vllm:kv_cache_usage_perc") ? family::kv_usage : family::other;
    case 'g':
      return is("vllm:gpu_cache_usage_perc") ? family::gpu_usage : family::other;
    case 'c':
      return is("vllm:cache_config_info") ? family::cache_config : family::other;
    default:
      return family::other;
  }
}

// A Prometheus sample value as Go and prometheus_client print it: a decimal or exponent float,
// "+Inf", "-Inf", "NaN". from_chars takes no leading '+', so that is stripped first.
bool parse_value(std::string_view token, double& value) {
  const char* first = token.data();
  const char* last = first + token.size();
  if (first != last && *first == '+') {
    ++first;
    if (first != last && (*first == '+' || *first == '-')) return false;
  }
  if (first == last) return false;
  auto [end, ec] = std::from_chars(first, last, value, std::chars_format::general);
  if (end != last) return false;
  if (ec == std::errc::result_out_of_range) {
    // Past a double's range either way ("1e400", "1e-400"): vLLM never prints such a number
    // (Python's repr of a float is always in range), so it reads as NaN, which every bound refuses.
    value = std::nan("");
    return true;
  }
  return ec == std::errc();
}

// An optional timestamp after the value: a whole number of milliseconds, possibly negative.
bool is_timestamp(std::string_view token) {
  if (!token.empty() && token.front() == '-') token.remove_prefix(1);
  if (token.empty()) return false;
  for (char c : token) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// Parses what follows the metric name of a sample line: an optional label set, the value and an
// optional timestamp. Calls on_label(name, raw_value) for each label, raw_value still escaped.
// Returns false when the line does not have that shape.
template <class OnLabel>
bool parse_sample(std::string_view line, std::size_t pos, double& value, OnLabel&& on_label) {
  const std::size_t n = line.size();
  auto skip_blanks = [&] {
    while (pos < n && is_blank(line[pos])) ++pos;
  };
  skip_blanks();
  if (pos < n && line[pos] == '{') {
    ++pos;
    for (;;) {
      skip_blanks();
      if (pos >= n) return false;
      if (line[pos] == '}') break;  // also after a trailing comma, as Prometheus accepts
      std::size_t name_start = pos;
      if (!is_name_start(line[pos]) || line[pos] == ':') return false;
      while (pos < n && is_label_char(line[pos])) ++pos;
      std::string_view name = line.substr(name_start, pos - name_start);
      skip_blanks();
      if (pos >= n || line[pos] != '=') return false;
      ++pos;
      skip_blanks();
      if (pos >= n || line[pos] != '"') return false;
      std::size_t value_start = ++pos;
      // The closing quote is the first one not escaped; any byte may follow a backslash here, so
      // a value with "}", "," or a blank inside cannot end the label set early.
      for (;;) {
        const void* hit = std::memchr(line.data() + pos, '"', n - pos);
        if (hit == nullptr) return false;
        std::size_t quote = static_cast<const char*>(hit) - line.data();
        std::size_t backslashes = 0;
        while (quote - backslashes > value_start && line[quote - backslashes - 1] == '\\') {
          ++backslashes;
        }
        pos = quote + 1;
        if (backslashes % 2 == 0) {
          on_label(name, line.substr(value_start, quote - value_start));
          break;
        }
      }
      skip_blanks();
      if (pos >= n) return false;
      if (line[pos] == ',') {
        ++pos;
        continue;
      }
      if (line[pos] != '}') return false;
      break;
    }
    ++pos;  // past '}'
    skip_blanks();
  }
  std::size_t value_start = pos;
  while (pos < n && !is_blank(line[pos])) ++pos;
  if (!parse_value(line.substr(value_start, pos - value_start), value)) return false;
  skip_blanks();
  if (pos == n) return true;
  std::size_t stamp_start = pos;
  while (pos < n && !is_blank(line[pos])) ++pos;
  if (!is_timestamp(line.substr(stamp_start, pos - stamp_start))) return false;
  skip_blanks();
  return pos == n;
}

// A label value that must be a whole number: digits only (an escape is not a digit).
bool parse_count(std::string_view raw, std::uint64_t& count) {
  if (raw.empty()) return false;
  auto [end, ec] = std::from_chars(raw.data(), raw.data() + raw.size(), count);
  return ec == std::errc() && end == raw.data() + raw.size();
}

// The labels of one vllm:cache_config_info series that size a prefix index.
struct cache_config_series {
  std::uint64_t block_size = 0, gpu_blocks = 0;
  bool has_block_size = false, has_gpu_blocks = false, gpu_blocks_none = false;
  bool bad_label = false;

  void on_label(std::string_view name, std::string_view raw) {
    if (name == "block_size") {
      has_block_size = true;
      if (!parse_count(raw, block_size)) bad_label = true;
    } else if (name == "num_gpu_blocks") {
      if (raw == "None") {
        gpu_blocks_none = true;
      } else {
        has_gpu_blocks = true;
        if (!parse_count(raw, gpu_blocks)) bad_label = true;
      }
    }
  }

  bool valid() const {
    if (bad_label) return false;
    if (has_block_size && (block_size == 0 || block_size > engine_metrics::max_block_size)) {
      return false;
    }
    return !(has_gpu_blocks && gpu_blocks > engine_metrics::max_gpu_blocks_per_series);
  }
};

// What the samples read so far add up to; parse() writes it out only when the body is whole.
class sample_totals {
 public:
  // Adds one sample of a family we read; false when its value is out of bounds.
  bool add(family fam, double value, const cache_config_series& cache) {
    switch (fam) {
      case family::running:
      case family::waiting:
        return add_requests(fam, value);
      case family::kv_usage:
      case family::gpu_usage:
        return add_usage(fam, value);
      case family::cache_config:
        return add_cache_config(cache);
      case family::other:
        break;
    }
    return true;
  }

  // The first family missing from the body, or none.
  engine_metrics_error missing() const {
    if (running_series_ == 0) return engine_metrics_error::missing_running;
    if (waiting_series_ == 0) return engine_metrics_error::missing_waiting;
    if (!kv_seen_ && !gpu_seen_) return engine_metrics_error::missing_kv_usage;
    return engine_metrics_error::none;
  }

  void write(engine_metrics& out) const {
    out.running = static_cast<std::uint64_t>(running_);
    out.waiting = static_cast<std::uint64_t>(waiting_);
    out.kv_usage = kv_seen_ ? kv_max_ : gpu_max_;
    out.kv_usage_legacy = !kv_seen_;
    out.engines = running_series_;
    out.block_size = static_cast<std::uint32_t>(block_size_);
    out.num_gpu_blocks = (cache_seen_ && !gpu_blocks_unknown_) ? gpu_blocks_ : 0;
  }

 private:
  bool add_requests(family fam, double value) {
    if (!std::isfinite(value) || value < 0 || value > engine_metrics::max_requests_per_series) {
      return false;
    }
    const double whole = std::nearbyint(value);
    if (fam == family::running) {
      running_ += whole;
      ++running_series_;
    } else {
      waiting_ += whole;
      ++waiting_series_;
    }
    return true;
  }

  bool add_usage(family fam, double value) {
    // `!(value >= 0 && value <= 1)` is also true for NaN.
    if (!(value >= 0 && value <= 1)) return false;
    double& max = fam == family::kv_usage ? kv_max_ : gpu_max_;
    bool& seen = fam == family::kv_usage ? kv_seen_ : gpu_seen_;
    if (!seen || value > max) max = value;
    seen = true;
    return true;
  }

  bool add_cache_config(const cache_config_series& c) {
    // The info gauge's value is always 1; only its labels carry information.
    if (!c.valid()) return false;
    cache_seen_ = true;
    if (c.has_block_size && c.block_size > block_size_) block_size_ = c.block_size;
    if (c.gpu_blocks_none || !c.has_gpu_blocks) gpu_blocks_unknown_ = true;
    gpu_blocks_ += c.gpu_blocks;
    return true;
  }

  double running_ = 0, waiting_ = 0;
  std::uint32_t running_series_ = 0, waiting_series_ = 0;
  double kv_max_ = 0, gpu_max_ = 0;
  bool kv_seen_ = false, gpu_seen_ = false;
  std::uint64_t block_size_ = 0, gpu_blocks_ = 0;
  bool gpu_blocks_unknown_ = false, cache_seen_ = false;
};

// Reads one line, `line` without its end and leading blanks and not a comment, into `totals`.
engine_metrics_error read_line(std::string_view line, sample_totals& totals) {
  if (!is_name_start(line.front())) return engine_metrics_error::not_prometheus_text;
  std::size_t name_len = 0;
  const family fam = classify(line, name_len);
  if (fam == family::other) return engine_metrics_error::none;
  double value = 0;
  cache_config_series cache;
  auto on_label = [&](std::string_view name, std::string_view raw) {
    if (fam == family::cache_config) cache.on_label(name, raw);
  };
  if (!parse_sample(line, name_len, value, on_label)) {
    return engine_metrics_error::malformed_sample;
  }
  return totals.add(fam, value, cache) ? engine_metrics_error::none
                                       : engine_metrics_error::bad_value;
}

}  // namespace

engine_metrics_status engine_metrics::parse(std::string_view body, engine_metrics& out) {
  sample_totals totals;
  std::size_t pos = 0;
  // A UTF-8 byte order mark is not part of the first line.
  if (body.size() >= 3 && body.substr(0, 3) == "\xEF\xBB\xBF") pos = 3;

  while (pos < body.size()) {
    const std::size_t line_start = pos;
    const void* hit = std::memchr(body.data() + pos, '\n', body.size() - pos);
    std::size_t line_end = hit ? static_cast<const char*>(hit) - body.data() : body.size();
    pos = line_end + 1;
    if (line_end > line_start && body[line_end - 1] == '\r') --line_end;

    std::size_t first = line_start;
    while (first < line_end && is_blank(body[first])) ++first;
    if (first == line_end) continue;   // blank line
    if (body[first] == '#') continue;  // HELP, TYPE, EOF or a plain comment
    const auto error = read_line(body.substr(first, line_end - first), totals);
    if (error != engine_metrics_error::none) return {error, line_start};
  }

  if (const auto error = totals.missing(); error != engine_metrics_error::none) {
    return {error, body.size()};
  }
  totals.write(out);
  return {};
}

}  // namespace glm::protocol
