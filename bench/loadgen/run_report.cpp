#include "bench/loadgen/run_report.hpp"

#include <cstdio>
#include <string>

namespace glm::loadgen {
namespace {

std::string fixed(double v, int decimals = 3) {
  char out[64];
  std::snprintf(out, sizeof out, "%.*f", decimals, v);
  return out;
}

// Labels come from our own script; still, keep the JSON valid whatever they hold.
std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  return out + "\"";
}

}  // namespace

double run_report::hit_ratio() const {
  const run_stats& s = result_.stats;
  return s.prompt_tokens() > 0
             ? static_cast<double>(s.cached_tokens()) / static_cast<double>(s.prompt_tokens())
             : 0.0;
}

void run_report::print_table(std::ostream& out) {
  run_stats& s = result_.stats;
  const double rps = result_.elapsed_s > 0 ? static_cast<double>(s.ok()) / result_.elapsed_s : 0;
  out << "glm-loadgen "
      << (config_.hold_mode()           ? "hold"
          : config_.conversation_mode() ? "conversations"
                                        : "closed loop")
      << (config_.label.empty() ? "" : " [" + config_.label + "]") << "\n";
  out << "  streams            " << (config_.hold_mode() ? config_.hold : config_.clients) << "\n";
  out << "  completed ok       " << s.ok() << "\n";
  out << "  errors             " << s.errors();
  for (const auto& [kind, n] : s.error_kinds()) out << "  " << kind << "=" << n;
  out << "\n";
  out << "  elapsed            " << fixed(result_.elapsed_s) << " s\n";
  out << "  requests/s         " << fixed(rps, 1) << "\n";
  out << "  max open streams   " << result_.max_open << "\n";
  if (config_.conversation_mode()) {
    out << "  conversations      " << config_.conversations << " x " << config_.turns
        << " turns, skipped turns " << s.skipped_turns() << "\n";
    out << "  prefix hit ratio   " << fixed(hit_ratio(), 4) << "  (cached " << s.cached_tokens()
        << " / prompt " << s.prompt_tokens() << " tokens; answers without usage "
        << s.usage_missing() << ")\n";
  }
  out << "                     p50        p90        p99        max   (ms)\n";
  auto row = [&](const char* name, auto&& at) {
    out << "  " << name;
    for (const double p : {50.0, 90.0, 99.0, 100.0}) {
      const std::string v = fixed(at(p));
      out << std::string(v.size() < 11 ? 11 - v.size() : 1, ' ') << v;
    }
    out << "\n";
  };
  row("TTFT             ", [&](double p) { return s.ttft_ms(p); });
  row("inter-token gap  ", [&](double p) { return s.gap_ms(p); });
  row("total            ", [&](double p) { return s.total_ms(p); });
  if (s.dropped_samples() > 0) out << "  (dropped " << s.dropped_samples() << " samples)\n";
}

void run_report::print_json(std::ostream& out) {
  run_stats& s = result_.stats;
  const double rps = result_.elapsed_s > 0 ? static_cast<double>(s.ok()) / result_.elapsed_s : 0;
  auto quantiles = [&](auto&& at) {
    return "{\"p50\":" + fixed(at(50.0), 4) + ",\"p90\":" + fixed(at(90.0), 4) +
           ",\"p99\":" + fixed(at(99.0), 4) + ",\"max\":" + fixed(at(100.0), 4) + "}";
  };
  std::string kinds = "{";
  for (const auto& [kind, n] : s.error_kinds()) {
    if (kinds.size() > 1) kinds += ',';
    kinds += json_string(kind) + ":" + std::to_string(n);
  }
  kinds += '}';
  out << "RESULT {\"label\":" << json_string(config_.label) << ",\"mode\":\""
      << (config_.hold_mode()           ? "hold"
          : config_.conversation_mode() ? "conversations"
                                        : "closed")
      << "\",\"streams\":" << (config_.hold_mode() ? config_.hold : config_.clients)
      << ",\"max_tokens\":" << config_.max_tokens << ",\"ok\":" << s.ok()
      << ",\"errors\":" << s.errors() << ",\"error_kinds\":" << kinds
      << ",\"tokens\":" << s.tokens() << ",\"elapsed_s\":" << fixed(result_.elapsed_s, 4)
      << ",\"rps\":" << fixed(rps, 2) << ",\"max_open\":" << result_.max_open
      << ",\"ttft_ms\":" << quantiles([&](double p) { return s.ttft_ms(p); })
      << ",\"gap_ms\":" << quantiles([&](double p) { return s.gap_ms(p); })
      << ",\"total_ms\":" << quantiles([&](double p) { return s.total_ms(p); });
  if (config_.conversation_mode()) {
    out << ",\"conversations\":" << config_.conversations << ",\"turns\":" << config_.turns
        << ",\"skipped_turns\":" << s.skipped_turns() << ",\"prompt_tokens\":" << s.prompt_tokens()
        << ",\"cached_tokens\":" << s.cached_tokens() << ",\"usage_missing\":" << s.usage_missing()
        << ",\"hit_ratio\":" << fixed(hit_ratio(), 4);
  }
  out << "}" << std::endl;
}

}  // namespace glm::loadgen
