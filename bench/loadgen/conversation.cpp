#include "bench/loadgen/conversation.hpp"

#include "bench/loadgen/request_builder.hpp"

namespace glm::loadgen {
namespace {

// splitmix64: tiny, fast, and the same on every platform.
std::uint64_t next_random(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
  std::uint64_t state = a * 0x100000001b3ULL ^ b;
  return next_random(state);
}

}  // namespace

conversation::conversation(const loadgen_config& config, std::int64_t index)
    : config_(config), index_(index) {
  const std::int64_t groups = config.groups > 0 ? config.groups : 1;
  const auto group = static_cast<std::uint64_t>(index % groups);
  if (config.system_bytes > 0) {
    messages_ = "{\"role\":\"system\",\"content\":\"";
    messages_ += words(mix(config.seed, 0x5157'0000'0000ULL + group), config.system_bytes);
    messages_ += "\"}";
  }
}

std::string conversation::words(std::uint64_t seed, std::int64_t bytes) {
  std::string out;
  if (bytes <= 0) return out;
  out.reserve(static_cast<std::size_t>(bytes) + 16);
  std::uint64_t state = seed;
  while (static_cast<std::int64_t>(out.size()) < bytes) {
    std::uint64_t r = next_random(state);
    if (!out.empty()) out += ' ';
    const int length = 3 + static_cast<int>(r % 7);
    r /= 7;
    for (int i = 0; i < length; ++i) {
      out += static_cast<char>('a' + r % 26);
      r /= 26;
    }
  }
  out.resize(static_cast<std::size_t>(bytes));
  if (out.back() == ' ') out.back() = 'x';
  return out;
}

std::string conversation::next_turn_body() {
  if (!messages_.empty()) messages_ += ',';
  messages_ += "{\"role\":\"user\",\"content\":\"";
  messages_ += words(mix(mix(config_.seed, static_cast<std::uint64_t>(index_)),
                         static_cast<std::uint64_t>(turn_) + 1),
                     config_.turn_bytes);
  messages_ += "\"}";
  ++turn_;

  std::string out = "{\"model\":\"" + config_.model + "\",\"messages\":[";
  out += messages_;
  out += "],\"max_tokens\":" + std::to_string(config_.max_tokens) +
         ",\"stream\":true,\"stream_options\":{\"include_usage\":true}";
  if (!config_.extra_json.empty()) {
    out += ',';
    out += config_.extra_json;
  }
  out += '}';
  return out;
}

void conversation::add_answer(std::string_view escaped_text) {
  messages_ += ",{\"role\":\"assistant\",\"content\":\"";
  messages_ += escaped_text;
  messages_ += "\"}";
}

std::string conversation::head(const target& to, std::size_t body_size) const {
  std::string extra;
  if (config_.session_header) extra = "X-Session-Id: conv-" + std::to_string(index_) + "\r\n";
  return request_builder::head(config_, to, body_size, extra);
}

}  // namespace glm::loadgen
