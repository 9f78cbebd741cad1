#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace glm::mock {

// Which part of a PD pair a request addresses, read from its kv_transfer_params.
enum class request_role {
  prefill,  // kv_transfer_params.do_remote_decode == true
  decode,   // kv_transfer_params.do_remote_prefill == true
  plain,    // anything else: the instance prefills and decodes by itself
};

// The few members of a /v1/completions or /v1/chat/completions body that steer the mock.
struct completion_request {
  request_role role = request_role::plain;
  bool chat = false;
  bool stream = false;
  bool include_usage = false;
  std::int64_t max_tokens = 16;
  std::int64_t prompt_tokens = 1;  // whitespace-separated words, at least 1
  std::string fault;               // "mock_fault", empty if absent
  // Words of the form "tok<digits>" in the prompt (chat: in the last user message's content). A
  // proxy that re-prefills after a recompute appends the text generated so far, " tok0 tok1 ...",
  // so under mock_fault "recompute" this is how many tokens the preempted decode already produced.
  std::int64_t tok_words = 0;
  // Engine requests vLLM makes of a completion: one per string or token-id list of a list prompt,
  // else one (a chat is always one).
  std::int64_t prompts = 1;
  // kv_transfer_params.metaserver of a layerwise decode request, empty if absent or not a string.
  std::string metaserver;

  // Parses `body` with simdjson On-Demand. On a body that is not a JSON object, or a member of an
  // impossible value, returns nullopt and sets `error` to a message for a 400 answer.
  static std::optional<completion_request> parse(std::string_view body, bool chat,
                                                 std::string& error);
};

}  // namespace glm::mock
