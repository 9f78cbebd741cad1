#pragma once

#include <string>
#include <string_view>

#include "bench/loadgen/loadgen_config.hpp"

namespace glm::loadgen {

// The bytes of the one request every client sends, built once: a client writes the head and the
// body as two buffers, so even a 1 MiB prompt costs the load generator no per-request copy.
class request_builder {
 public:
  // {"model":M,"prompt":"<words>","max_tokens":T,"stream":true<,extra>}. The prompt is words of
  // lorem text that never look like the mock's " tok<i>" tokens.
  static std::string body(const loadgen_config& config);
  // "POST path HTTP/1.1" with Host, Content-Type, Content-Length and keep-alive, plus
  // `extra_headers` (complete "Name: value\r\n" lines).
  static std::string head(const loadgen_config& config, const target& to, std::size_t body_size,
                          std::string_view extra_headers = {});
};

}  // namespace glm::loadgen
