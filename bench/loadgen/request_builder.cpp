#include "bench/loadgen/request_builder.hpp"

#include <array>
#include <string_view>

namespace glm::loadgen {

std::string request_builder::body(const loadgen_config& config) {
  static constexpr std::array<std::string_view, 8> words{"lorem", "ipsum", "dolor", "sit",
                                                         "amet",  "conse", "adipi", "elit"};
  std::string prompt;
  if (config.prompt_bytes > 0) {
    const auto size = static_cast<std::size_t>(config.prompt_bytes);
    prompt.reserve(size + 8);
    for (std::size_t i = 0; prompt.size() < size; ++i) {
      if (!prompt.empty()) prompt += ' ';
      prompt += words[i % words.size()];
    }
    prompt.resize(size);
    if (!prompt.empty() && prompt.back() == ' ') prompt.back() = 'x';
  } else {
    for (std::int64_t i = 0; i < config.prompt_words; ++i) {
      if (i > 0) prompt += ' ';
      prompt += words[static_cast<std::size_t>(i) % words.size()];
    }
  }
  std::string out = "{\"model\":\"" + config.model + "\",\"prompt\":\"";
  out += prompt;
  out += "\",\"max_tokens\":" + std::to_string(config.max_tokens) + ",\"stream\":true";
  if (!config.extra_json.empty()) {
    out += ',';
    out += config.extra_json;
  }
  out += '}';
  return out;
}

std::string request_builder::head(const loadgen_config& config, const target& to,
                                  std::size_t body_size, std::string_view extra_headers) {
  std::string out = "POST " + config.path + " HTTP/1.1\r\n";
  out += "Host: " + to.host + ":" + std::to_string(to.port) + "\r\n";
  out += "User-Agent: glm-loadgen\r\n";
  out += "Accept: text/event-stream\r\n";
  out += "Content-Type: application/json\r\n";
  out += "Content-Length: " + std::to_string(body_size) + "\r\n";
  out += extra_headers;
  out += "Connection: keep-alive\r\n\r\n";
  return out;
}

}  // namespace glm::loadgen
