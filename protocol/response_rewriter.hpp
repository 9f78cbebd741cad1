#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace glm::protocol {

// The few changes the proxy makes to a decoder's answer, on a JSON body or on one SSE event. The
// relay calls these only after a substring test says an event may need them, so the common event
// is forwarded without any parse.
class response_rewriter {
 public:
  // The JSON object `json` with usage.prompt_tokens_details.cached_tokens set to `cached`
  // (prompt_tokens_details is created when absent or null), every other byte unchanged. nullopt
  // when there is nothing to fix: no usage object, usage null, or not a JSON object.
  static std::optional<std::string> with_cached_tokens(std::string_view json, std::int64_t cached);

  // The same for an SSE event ("data: {...}\n\n"): nullopt when the event is left as it is.
  static std::optional<std::string> event_with_cached_tokens(std::string_view event,
                                                             std::int64_t cached);

  // The payload of an event's data line ("data: X" gives X), or empty when it has none.
  static std::string_view event_data(std::string_view event);

  // True when some choice of the JSON object ends with "stop_reason":"recomputed".
  static bool is_recomputed(std::string_view json);

  // Appends the generated text of choice 0 (completions "text", chat "delta.content" or
  // "message.content") to `out`, still JSON-escaped as it was sent, so it can be spliced into a
  // JSON string without a decode/encode round trip. Appends nothing when there is no such string.
  static void append_choice_text(std::string_view json, std::string& out);
  // The same through the general scan alone (simdjson, any JSON), without the fast path that
  // append_choice_text tries first (choice_text_scanner); for tests and fuzzing that compare them.
  static void append_choice_text_general(std::string_view json, std::string& out);

  // The JSON object with `prefix` (JSON-escaped text) inserted at the start of choice 0's text or
  // message content: how a non-stream answer shows the text generated before a recompute.
  // nullopt when there is no such string.
  static std::optional<std::string> with_choice_text_prefix(std::string_view json,
                                                            std::string_view prefix);

  // usage.completion_tokens of a JSON object, when it is an integer.
  static std::optional<std::int64_t> completion_tokens(std::string_view json);
};

}  // namespace glm::protocol
