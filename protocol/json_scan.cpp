#include "protocol/json_scan.hpp"

#include <array>
#include <charconv>
#include <cstdint>
#include <cstring>

namespace glm::protocol::detail {

namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// The length of a valid escape by the byte after its backslash (0: not an escape JSON allows).
constexpr std::array<std::uint8_t, 256> escape_length = [] {
  std::array<std::uint8_t, 256> table{};
  for (char c : std::string_view("\"\\/bfnrt")) table[static_cast<unsigned char>(c)] = 2;
  table['u'] = 6;
  return table;
}();

constexpr std::array<bool, 256> is_hex = [] {
  std::array<bool, 256> table{};
  for (char c : std::string_view("0123456789abcdefABCDEF"))
    table[static_cast<unsigned char>(c)] = true;
  return table;
}();

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes the escape at s[i] == '\\' into one code unit; false when it is not valid JSON.
bool decode_escape(std::string_view s, std::size_t& i, unsigned& unit) {
  if (i + 1 >= s.size()) return false;
  switch (s[i + 1]) {
    case '"':
      unit = '"';
      break;
    case '\\':
      unit = '\\';
      break;
    case '/':
      unit = '/';
      break;
    case 'b':
      unit = '\b';
      break;
    case 'f':
      unit = '\f';
      break;
    case 'n':
      unit = '\n';
      break;
    case 'r':
      unit = '\r';
      break;
    case 't':
      unit = '\t';
      break;
    case 'u': {
      if (i + 6 > s.size()) return false;
      unit = 0;
      for (std::size_t k = i + 2; k < i + 6; ++k) {
        int h = hex_value(s[k]);
        if (h < 0) return false;
        unit = unit * 16 + unsigned(h);
      }
      i += 6;
      return true;
    }
    default:
      return false;
  }
  i += 2;
  return true;
}

}  // namespace

bool key_is(std::string_view raw, std::string_view name) {
  // Two shortcuts settle nearly every call without looking for a backslash: the first unit of
  // the key is its first byte unless that starts an escape; and an escape only makes a key
  // shorter than its raw text, so a raw key no longer than the name matches only as it is.
  if (raw.empty() || name.empty()) return raw == name;
  if (raw.front() != name.front() && raw.front() != '\\') return false;
  if (raw.size() <= name.size()) return raw == name;
  if (raw.find('\\') == std::string_view::npos) return false;
  std::size_t i = 0;
  std::size_t j = 0;
  while (i < raw.size()) {
    unsigned unit = static_cast<unsigned char>(raw[i]);
    if (raw[i] == '\\') {
      if (!decode_escape(raw, i, unit)) return false;
    } else {
      ++i;
    }
    // Any unit outside ASCII (a \u escape above 0x7f, or a UTF-8 byte) cannot be in `name`.
    if (unit >= 0x80 || j >= name.size() || static_cast<unsigned char>(name[j]) != unit) {
      return false;
    }
    ++j;
  }
  return j == name.size();
}

bool valid_number(std::string_view t) {
  std::size_t i = 0;
  if (i < t.size() && t[i] == '-') ++i;
  if (i >= t.size()) return false;
  if (t[i] == '0') {
    ++i;
  } else if (is_digit(t[i])) {
    while (i < t.size() && is_digit(t[i])) ++i;
  } else {
    return false;
  }
  if (i < t.size() && t[i] == '.') {
    ++i;
    if (i >= t.size() || !is_digit(t[i])) return false;
    while (i < t.size() && is_digit(t[i])) ++i;
  }
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
    if (i >= t.size() || !is_digit(t[i])) return false;
    while (i < t.size() && is_digit(t[i])) ++i;
  }
  return i == t.size();
}

bool valid_string_token(std::string_view t) {
  if (t.size() < 2 || t.front() != '"' || t.back() != '"') return false;
  const char* p = t.data() + 1;
  const char* const end = t.data() + t.size() - 1;
  while (p < end) {
    // Escapes often come a few bytes apart (code, quoted text, CJK text sent as \uXXXX), where a
    // memchr call costs more than it saves; look a short way by hand first. A prompt without
    // escapes still goes through memchr at memory speed.
    const char* near_end = end - p > 16 ? p + 16 : end;
    while (p < near_end && *p != '\\') ++p;
    if (p == near_end) {
      if (p == end) return true;
      p = static_cast<const char*>(std::memchr(p, '\\', std::size_t(end - p)));
      if (p == nullptr) return true;
    }
    if (end - p < 2) return false;
    const unsigned length = escape_length[static_cast<unsigned char>(p[1])];
    if (length == 0) return false;
    if (length == 6 &&
        (end - p < 6 || !is_hex[static_cast<unsigned char>(p[2])] ||
         !is_hex[static_cast<unsigned char>(p[3])] || !is_hex[static_cast<unsigned char>(p[4])] ||
         !is_hex[static_cast<unsigned char>(p[5])])) {
      return false;
    }
    p += length;
  }
  return true;
}

bool parse_int64(std::string_view token, std::int64_t& out) {
  if (token.find_first_of(".eE") != std::string_view::npos) return false;
  const char* last = token.data() + token.size();
  auto [ptr, ec] = std::from_chars(token.data(), last, out);
  return ec == std::errc() && ptr == last;
}

simdjson::error_code container_end(ondemand::value& v, const char*& end) {
  // After a container is consumed the iterator sits on the next structural byte (`,` `}` `]`);
  // the container's closing bracket is the last non-whitespace byte before it.
  const char* next = nullptr;
  if (auto ec = v.current_location().get(next)) return ec;
  while (is_json_ws(next[-1])) --next;
  end = next;
  return simdjson::SUCCESS;
}

simdjson::error_code skip_value(ondemand::value& v, int depth, const char*& end) {
  if (depth > max_depth) return simdjson::DEPTH_ERROR;
  ondemand::json_type type;
  if (auto ec = v.type().get(type)) return ec;
  // A scalar's raw token runs to the next structural byte, so it carries trailing whitespace.
  std::string_view token = trim_ws_end(v.raw_json_token());
  switch (type) {
    case ondemand::json_type::object:
      return for_each_field(v, depth, end, [depth](const field_view&, ondemand::value& child) {
        const char* child_end = nullptr;
        return skip_value(child, depth + 1, child_end);
      });
    case ondemand::json_type::array: {
      ondemand::array array;
      if (auto ec = v.get_array().get(array)) return ec;
      for (auto element_result : array) {
        ondemand::value element;
        if (auto ec = std::move(element_result).get(element)) return ec;
        const char* element_end = nullptr;
        if (auto ec = skip_value(element, depth + 1, element_end)) return ec;
      }
      return container_end(v, end);
    }
    case ondemand::json_type::string: {
      if (!valid_string_token(token)) return simdjson::STRING_ERROR;
      // Consumed here, not left to the enclosing iterator: its skip takes a string followed by
      // ':' for an object key, so ["k":[1]}] would pass as an array of one element.
      ondemand::raw_json_string raw;
      if (auto ec = v.get_raw_json_string().get(raw)) return ec;
      break;
    }
    case ondemand::json_type::number:
      if (!valid_number(token)) return simdjson::NUMBER_ERROR;
      break;
    case ondemand::json_type::boolean:
      if (token != "true" && token != "false") return simdjson::T_ATOM_ERROR;
      break;
    case ondemand::json_type::null:
      if (token != "null") return simdjson::N_ATOM_ERROR;
      break;
  }
  // Other scalars are left for the enclosing iterator to step over: it skips unconsumed children,
  // and a number or literal followed by anything but ',' and the closing bracket is an error.
  end = token.data() + token.size();
  return simdjson::SUCCESS;
}

std::string describe(scan_status status, simdjson::error_code ec, std::string_view what) {
  std::string out(what);
  switch (status) {
    case scan_status::ok:
      out += " is valid";
      break;
    case scan_status::empty:
      out += " is empty; expected a JSON object";
      break;
    case scan_status::not_object:
      out += " is not a JSON object";
      break;
    case scan_status::trailing:
      out += " has data after the JSON object";
      break;
    case scan_status::too_deep:
      out += " is nested too deeply";
      break;
    case scan_status::invalid:
      out += " is not valid JSON: ";
      out += simdjson::error_message(ec);
      break;
  }
  return out;
}

void ensure_padding(std::string& body) {
  if (body.capacity() < body.size() + simdjson::SIMDJSON_PADDING) {
    body.reserve(body.size() + simdjson::SIMDJSON_PADDING);
  }
}

namespace {
thread_local ondemand::parser tls_parser;
}  // namespace

ondemand::parser& thread_parser() {
  return tls_parser;
}

void release_thread_parser_if_large() {
  if (tls_parser.capacity() > retained_parser_capacity) tls_parser = ondemand::parser{};
}

}  // namespace glm::protocol::detail
