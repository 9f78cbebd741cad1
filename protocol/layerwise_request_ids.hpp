#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/client_request.hpp"

namespace glm::protocol {

// The request ids a vLLM decoder reports to the metaserver for one backend request. vLLM's
// OpenAI server names a request after its X-Request-Id header X: "chatcmpl-X" for a chat, and
// "cmpl-X-<i>" for prompt i of a completion, since it expands a completion's prompt list into one
// engine request per prompt (and the layerwise connector strips the engine's own suffix again).
//
// Stateless and thread-safe.
class layerwise_request_ids {
 public:
  // Prompts in a completion request, as vLLM counts them: a list of token ids is one prompt; a list
  // of strings, or of token-id lists, is one per element; a string is one. Other lists (mixed
  // element types, booleans) count their elements, and an empty list counts 1, as vllm-ascend's
  // layerwise proxy counts them; vLLM refuses such a prompt with a 400 before any callback, so no
  // id of theirs is ever reported. No "prompt" (a chat body): 1.
  // `req` must come from request_splicer::parse (its body is valid JSON).
  static std::size_t prompt_count(const client_request& req);

  // The ids for a request sent with "X-Request-Id: <backend_id>", in prompt order; one for a chat.
  // `out` is cleared first.
  static void ids(const client_request& req, bool chat, std::string_view backend_id,
                  std::vector<std::string>& out);
};

}  // namespace glm::protocol
