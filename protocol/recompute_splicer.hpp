#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "protocol/client_request.hpp"

namespace glm::protocol {

// Builds the body of a re-prefill after a decoder preempted a request and ended it with
// "stop_reason":"recomputed": the client's body with the text generated so far appended to the
// prompt (chat: to the content of the last "user" message) and max_tokens replaced, every other
// byte copied verbatim.
class recompute_splicer {
 public:
  // `generated` is text still JSON-escaped as the decoder sent it, so it is spliced into the
  // prompt's JSON string as is. Completions need a string "prompt"; chat needs a "messages" array
  // whose last "user" message has a string "content". nullopt when the body has no such place to
  // append to (a token-id prompt, multimodal content): the caller then cannot recompute.
  // max_completion_tokens, when the client sent it, is replaced by the same figure.
  static std::optional<std::string> body(const client_request& req, std::string_view generated,
                                         std::int64_t max_tokens);
};

}  // namespace glm::protocol
