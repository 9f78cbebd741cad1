#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

#include "bench/mock_vllm/mock_config.hpp"

namespace glm::mock {

// The JSON bodies and SSE events of one completion, in vLLM's shapes. Token i reads " tok<i>".
// Holds a reference to the config, which outlives every session.
class completion_bodies {
 public:
  completion_bodies(const mock_config& config, bool chat, std::string request_id);

  // A prefiller's answer: one generated token, usage with `cached_tokens`, and
  // kv_transfer_params (null if !with_kv) that point back at this instance.
  std::string prefill(std::int64_t prompt_tokens, std::int64_t cached_tokens, bool with_kv) const;

  // A whole non-stream answer of `tokens` tokens numbered from `first`. `recomputed`: the answer of
  // a preempted request, finish_reason "stop" and stop_reason "recomputed".
  std::string full(std::int64_t prompt_tokens, std::int64_t first, std::int64_t tokens,
                   std::int64_t cached_tokens, bool recomputed = false) const;

  // SSE events, each "data: <json>\n\n".
  std::string token_event(std::int64_t index, bool last) const;
  // The chunk that ends a preempted stream: empty text (chat: empty delta), finish_reason "stop",
  // stop_reason "recomputed".
  std::string recomputed_event() const;
  std::string usage_event(std::int64_t prompt_tokens, std::int64_t tokens,
                          std::int64_t cached_tokens) const;
  static constexpr std::string_view done_event = "data: [DONE]\n\n";

  // {"error":{"message":...,"type":...,"param":null,"code":status}}
  static std::string error(std::string_view message, int status);
  static std::string_view error_type(int status);

 private:
  // {"id":...,"object":...,"created":...,"model":..., without the closing brace.
  void append_head(std::string& out, std::string_view object) const;
  static void append_usage(std::string& out, std::int64_t prompt_tokens, std::int64_t tokens,
                           std::int64_t cached_tokens, bool total_first);

  const mock_config& config_;
  bool chat_;
  std::string id_;
  std::time_t created_;
};

}  // namespace glm::mock
