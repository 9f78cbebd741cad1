#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace glm::protocol {

// What the decode step needs from a prefiller's JSON answer.
struct prefill_result {
  // The raw bytes of the answer's "kv_transfer_params" value, copied verbatim. Empty when the
  // member is absent, null or an empty object: the decode request is then sent without it.
  std::string kv_transfer_params;
  // usage.prompt_tokens_details.cached_tokens, 0 when absent or null.
  std::int64_t cached_tokens = 0;
  // usage.prompt_tokens, absent when the answer has no usage: cache-aware routing then learns
  // nothing from it (an answer without usage leaves the prefix index as it is).
  std::optional<std::int64_t> prompt_tokens;

  // Scans a prefiller's 2xx body. Returns nullopt on success, or a message when the body is not a
  // JSON object. May grow body's capacity (not its size) for simdjson's padding.
  static std::optional<std::string> parse(std::string& body, prefill_result& out);
};

}  // namespace glm::protocol
