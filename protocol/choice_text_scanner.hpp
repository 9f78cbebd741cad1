#pragma once

#include <string_view>

namespace glm::protocol {

// The fast path of response_rewriter::append_choice_text: one hand-written pass over a streamed
// chunk that validates it and finds choice 0's text, with no copy, no allocation and no simdjson
// parser. The relay runs it on every SSE event, where the general scan cost about half of the
// relay's own instructions.
//
// It decides only what it is sure of: a document inside a strict subset of JSON (ASCII or
// well-formed UTF-8, the four JSON whitespace bytes, unescaped keys, nesting up to max_depth),
// which every JSON validator accepts. Anything else, malformed or merely unusual, is `unsure`,
// and the caller runs the general scan, which has the last word.
class choice_text_scanner {
 public:
  enum class outcome {
    text,     // valid; choice 0's text is `text` (raw, escapes kept)
    no_text,  // valid; there is no such text
    unsure,   // outside the subset: ask the general scan
  };
  struct result {
    outcome what = outcome::unsure;
    std::string_view text;
  };

  static constexpr int max_depth = 32;

  static result scan(std::string_view json);
};

}  // namespace glm::protocol
