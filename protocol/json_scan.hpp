#pragma once

// Private to protocol/: the one-pass scan that request_splicer, prefill_result and json_error
// share. It walks a JSON object with simdjson On-Demand, validating every nested value completely
// (On-Demand alone only checks brackets when it skips a value), and reports each top-level member
// as byte offsets into the caller's buffer so callers can splice instead of re-serializing.
//
// Nothing here throws: only the error_code-returning simdjson forms are used.

#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace glm::protocol::detail {

namespace ondemand = simdjson::ondemand;

// Deeper nesting is refused: the walk recurses once per level, and simdjson's On-Demand front end
// only enforces its own depth limit (DEFAULT_MAX_DEPTH, 1024, counting the document itself) with
// an assert in development builds. Kept safely below it.
inline constexpr int max_depth = 1000;

inline bool is_json_ws(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

inline std::string_view trim_ws_end(std::string_view s) {
  while (!s.empty() && is_json_ws(s.back())) s.remove_suffix(1);
  return s;
}

// True when the raw (still escaped) key `raw` names `name`. Names are plain ASCII, so a key
// spelled with escapes ("str\u0065am") still matches the member a JSON parser would see.
bool key_is(std::string_view raw, std::string_view name);

// The JSON number grammar, checked on the raw token. simdjson's number parser also checks range
// (1e400, 20-digit integers), which Python's json accepts, so vLLM would take those bodies.
bool valid_number(std::string_view token);

// A string token with its quotes: every backslash starts a valid escape. simdjson's stage 1 has
// already checked quoting, UTF-8 and unescaped control bytes; escapes are only checked when a
// string is unescaped, which would cost a copy of a 1 MiB prompt.
bool valid_string_token(std::string_view token);

// Parses a JSON integer token (already known to match the number grammar). False when it has a
// fraction or exponent, or does not fit.
bool parse_int64(std::string_view token, std::int64_t& out);

// One member of an object, as pointers into the scanned buffer.
struct field_view {
  std::string_view key;     // between the quotes, still escaped
  const char* begin;        // the key's opening quote
  const char* value_begin;  // first byte of the value
};

// Validates `v` and everything inside it, leaving the iterator after it, and sets `end` one past
// its last byte (trailing whitespace excluded).
simdjson::error_code skip_value(ondemand::value& v, int depth, const char*& end);

// For a container value that has just been consumed: one past its closing bracket.
simdjson::error_code container_end(ondemand::value& v, const char*& end);

// Iterates the fields of `obj`, calling on_field(const field_view&, ondemand::value&) ->
// simdjson::error_code for each. on_field must consume the value completely (skip_value does).
template <class OnField>
simdjson::error_code for_each_field(ondemand::object& obj, OnField&& on_field) {
  for (auto field_result : obj) {
    ondemand::field field;
    if (auto ec = std::move(field_result).get(field)) return ec;
    ondemand::value& value = field.value();
    const char* key_raw = field.key().raw();  // just past the key's opening quote
    const char* value_begin = value.raw_json_token().data();
    // On-Demand does not give the key's length; walk back from the value over `"` ws `:` ws.
    const char* p = value_begin;
    while (is_json_ws(p[-1])) --p;
    if (p[-1] != ':') return simdjson::TAPE_ERROR;
    --p;
    while (is_json_ws(p[-1])) --p;
    if (p[-1] != '"' || p - 1 < key_raw) return simdjson::TAPE_ERROR;
    field_view view{std::string_view(key_raw, std::size_t(p - 1 - key_raw)), key_raw - 1,
                    value_begin};
    // Only keys with a backslash need the check; the test is cheap for the rest.
    if (view.key.find('\\') != std::string_view::npos &&
        !valid_string_token(std::string_view(view.begin, view.key.size() + 2))) {
      return simdjson::STRING_ERROR;
    }
    if (auto ec = on_field(std::as_const(view), value)) return ec;
  }
  return simdjson::SUCCESS;
}

// Like for_each_field for a value that is an object; sets `end` one past its closing brace.
template <class OnField>
simdjson::error_code for_each_field(ondemand::value& v, int depth, const char*& end,
                                    OnField&& on_field) {
  if (depth > max_depth) return simdjson::DEPTH_ERROR;
  ondemand::object obj;
  if (auto ec = v.get_object().get(obj)) return ec;
  if (auto ec = for_each_field(obj, on_field)) return ec;
  return container_end(v, end);
}

// How scanning a whole document as one object went.
enum class scan_status {
  ok,
  empty,       // nothing but whitespace
  not_object,  // valid start of an array, string, number...
  invalid,     // not JSON, or malformed somewhere inside
  trailing,    // bytes after the object's closing brace
  too_deep,
};

// A human-readable reason for a failed scan, naming `what` ("request body", "response").
std::string describe(scan_status status, simdjson::error_code ec, std::string_view what);

// Gives `body` simdjson's padding by growing its capacity (never its size).
void ensure_padding(std::string& body);

// Each thread's parser. Its buffers grow to the largest document seen; they are dropped again
// after a document bigger than this, so one huge request does not pin memory on a worker forever.
inline constexpr std::size_t retained_parser_capacity = std::size_t(16) << 20;
ondemand::parser& thread_parser();
void release_thread_parser_if_large();

// Scans `body` (padding it first) as one JSON object with nothing after it, calling on_field for
// each top-level member (depth 1). `ec` receives simdjson's code on failure.
template <class OnField>
scan_status scan_object(std::string& body, simdjson::error_code& ec, OnField&& on_field) {
  ensure_padding(body);
  struct release_guard {
    ~release_guard() { release_thread_parser_if_large(); }
  } guard;
  ondemand::parser& parser = thread_parser();
  ondemand::document doc;
  ec = parser.iterate(simdjson::padded_string_view(body.data(), body.size(), body.capacity()))
           .get(doc);
  if (ec == simdjson::EMPTY) return scan_status::empty;
  if (ec) return scan_status::invalid;
  ondemand::json_type type;
  if ((ec = doc.type().get(type))) return scan_status::invalid;
  if (type != ondemand::json_type::object) {
    ec = simdjson::INCORRECT_TYPE;
    return scan_status::not_object;
  }
  ondemand::object obj;
  if ((ec = doc.get_object().get(obj))) return scan_status::invalid;
  if ((ec = for_each_field(obj, on_field))) {
    return ec == simdjson::DEPTH_ERROR ? scan_status::too_deep : scan_status::invalid;
  }
  // The document has no at_end() in simdjson 3.0.1; a location past the object means trailing
  // bytes.
  const char* rest = nullptr;
  if (doc.current_location().get(rest) != simdjson::OUT_OF_BOUNDS) {
    ec = simdjson::TRAILING_CONTENT;
    return scan_status::trailing;
  }
  ec = simdjson::SUCCESS;
  return scan_status::ok;
}

}  // namespace glm::protocol::detail
