#pragma once

#include <string>
#include <string_view>

namespace glm::mock {

// JSON string literals for the bodies the mock writes. Kept separate from glm::protocol on purpose:
// the mock is the proxy's test oracle and must not share its code.
class json_text {
 public:
  // Appends `s` as a quoted JSON string. Valid UTF-8 passes unchanged apart from quotes,
  // backslashes and control bytes; if `s` is not valid UTF-8, every byte >= 0x80 is written as
  // \u00XX so the output stays valid JSON and the bytes can be recovered with latin-1.
  static void append_quoted(std::string& out, std::string_view s);

  static std::string quoted(std::string_view s) {
    std::string out;
    append_quoted(out, s);
    return out;
  }
};

}  // namespace glm::mock
