// libFuzzer target: the response rewriter on any bytes. When the input is a valid JSON object,
// a rewritten body must be one too, and the same rewrite must happen inside an SSE event. Built
// by tests/fuzz/run.sh only.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "protocol/choice_text_scanner.hpp"
#include "protocol/json_scan.hpp"
#include "protocol/response_rewriter.hpp"

using glm::protocol::response_rewriter;
namespace detail = glm::protocol::detail;

namespace {

#define FUZZ_ASSERT(cond) \
  do {                    \
    if (!(cond)) {        \
      std::abort();       \
    }                     \
  } while (0)

// The protocol library's own validator: a complete JSON object with nothing after it.
bool valid_object(std::string text) {
  simdjson::error_code ec;
  auto status =
      detail::scan_object(text, ec, [](const detail::field_view&, simdjson::ondemand::value& v) {
        const char* end = nullptr;
        return detail::skip_value(v, 1, end);
      });
  return status == detail::scan_status::ok;
}

// Some "cached_tokens" member of `json` has the value `number`. Only the value is replaced when
// the member exists, so JSON whitespace the decoder put after its colon stays.
bool sets_cached_tokens(std::string_view json, std::string_view number) {
  constexpr std::string_view key = "\"cached_tokens\"";
  for (auto at = json.find(key); at != std::string_view::npos; at = json.find(key, at + 1)) {
    auto value = json.find_first_not_of(" \t\r\n", at + key.size());
    if (value == std::string_view::npos || json[value] != ':') continue;
    value = json.find_first_not_of(" \t\r\n", value + 1);
    if (value == std::string_view::npos || !json.substr(value).starts_with(number)) continue;
    // The whole number: "420" is not 42.
    auto after = value + number.size();
    if (after == json.size() || json[after] < '0' || json[after] > '9') return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view json(reinterpret_cast<const char*>(data), size);
  const bool valid = valid_object(std::string(json));

  auto out = response_rewriter::with_cached_tokens(json, 42);
  if (out) {
    FUZZ_ASSERT(valid);  // only a valid object is rewritten
    FUZZ_ASSERT(valid_object(*out));
    FUZZ_ASSERT(sets_cached_tokens(*out, "42"));
  }

  if (json.find('\n') == std::string_view::npos) {
    const std::string event = "data: " + std::string(json) + "\r\n\r\n";
    auto rewritten = response_rewriter::event_with_cached_tokens(event, 42);
    if (!json.empty() && json.front() == '{') {
      FUZZ_ASSERT(rewritten.has_value() == out.has_value());
      if (rewritten) FUZZ_ASSERT(*rewritten == "data: " + *out + "\r\n\r\n");
    } else {
      FUZZ_ASSERT(!rewritten);
    }
  }

  const bool recomputed = response_rewriter::is_recomputed(json);
  if (recomputed) FUZZ_ASSERT(valid);

  std::string text = "prefix";
  response_rewriter::append_choice_text(json, text);
  FUZZ_ASSERT(text.starts_with("prefix"));
  if (text.size() > 6) {
    FUZZ_ASSERT(valid);
    // The text can be spliced into a JSON string as it is.
    FUZZ_ASSERT(detail::valid_string_token("\"" + text.substr(6) + "\""));
  }
  // The fast path decides only valid documents, and as the general scan does.
  const auto fast = glm::protocol::choice_text_scanner::scan(json);
  if (fast.what != glm::protocol::choice_text_scanner::outcome::unsure) {
    FUZZ_ASSERT(valid);
    std::string general = "prefix";
    response_rewriter::append_choice_text_general(json, general);
    FUZZ_ASSERT(general == text);
  }
  return 0;
}
