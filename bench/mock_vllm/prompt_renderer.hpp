#pragma once

#include <string>
#include <string_view>

namespace glm::mock {

// The text the simulated prefix cache and the chars-per-token count see: the mock's stand-in for
// a chat template and a tokenizer, independent of glm-proxy's code.
//
// - /v1/completions: `prompt` as a string; a list of strings joined with "\n"; a token id as 4
//   bytes (its value, little-endian), so that at 4 bytes a token one id is one token.
// - /v1/chat/completions: "<|tools|>\n" + the raw JSON of `tools` + "<|end|>\n" when the body
//   has tools, then per message "<|ROLE|>\n" + its text (a string, or the "text" of its parts)
//   + "<|end|>\n", then the generation prompt "<|assistant|>\n". So the rendering of turn n is a
//   prefix of turn n+1's (turn n's messages, then the assistant answer, then the next user
//   message), as with real chat templates.
//
// Stateless and thread-safe.
class prompt_renderer {
 public:
  // Renders a body that completion_request::parse accepted. False (and `out` partial) if it does
  // not parse after all.
  static bool render(std::string_view body, bool chat, std::string& out);
};

}  // namespace glm::mock
