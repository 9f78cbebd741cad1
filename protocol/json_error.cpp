#include "protocol/json_error.hpp"

#include <string>

#include "protocol/json_scan.hpp"

namespace glm::protocol {

namespace {

// Length of the well-formed UTF-8 sequence at s[i] (Unicode table 3-7), or 0 when it is not one.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  auto byte = [&](std::size_t k) -> unsigned {
    return k < s.size() ? static_cast<unsigned char>(s[k]) : 0x100u;
  };
  auto cont = [&](std::size_t k, unsigned lo = 0x80, unsigned hi = 0xbf) {
    unsigned b = byte(k);
    return b >= lo && b <= hi;
  };
  unsigned b0 = byte(i);
  if (b0 < 0x80) return 1;
  if (b0 >= 0xc2 && b0 <= 0xdf) return cont(i + 1) ? 2 : 0;
  if (b0 == 0xe0) return cont(i + 1, 0xa0, 0xbf) && cont(i + 2) ? 3 : 0;
  if ((b0 >= 0xe1 && b0 <= 0xec) || b0 == 0xee || b0 == 0xef) {
    return cont(i + 1) && cont(i + 2) ? 3 : 0;
  }
  if (b0 == 0xed) return cont(i + 1, 0x80, 0x9f) && cont(i + 2) ? 3 : 0;  // no surrogates
  if (b0 == 0xf0) return cont(i + 1, 0x90, 0xbf) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  if (b0 >= 0xf1 && b0 <= 0xf3) return cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  if (b0 == 0xf4) return cont(i + 1, 0x80, 0x8f) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  return 0;
}

bool needs_escape(unsigned char c) {
  return c < 0x20 || c == '"' || c == '\\';
}

}  // namespace

std::string json_error::make(std::string_view message, std::string_view type, int code) {
  std::string out;
  out.reserve(message.size() + type.size() + 64);
  out += R"({"error":{"message":")";
  escape_into(out, message);
  out += R"(","type":")";
  escape_into(out, type);
  out += R"(","param":null,"code":)";
  out += std::to_string(code);
  out += "}}";
  return out;
}

std::string_view json_error::type_for(int status) {
  switch (status) {
    case 400:
      return "BadRequestError";
    case 401:
      return "AuthenticationError";
    case 403:
      return "PermissionDeniedError";
    case 404:
      return "NotFoundError";
    case 405:
      return "MethodNotAllowed";
    case 413:
      return "RequestEntityTooLarge";
    case 503:
      return "ServiceUnavailableError";
    case 504:
      return "GatewayTimeout";
    default:
      break;
  }
  if (status >= 400 && status < 500) return "BadRequestError";
  // 5xx, and anything that is not an error status at all: the proxy only calls this for failures.
  return "InternalServerError";
}

std::string json_error::wrap_upstream(std::string_view body, int status) {
  std::size_t first = 0;
  while (first < body.size() && detail::is_json_ws(body[first])) ++first;
  if (first < body.size() && body[first] == '{') {
    // The error path: a padded copy is fine. The whole object is validated, not just its first
    // byte, so a truncated or HTML-tailed body is wrapped instead of passed on broken.
    std::string copy(body);
    simdjson::error_code ec = simdjson::SUCCESS;
    auto status_of_scan =
        detail::scan_object(copy, ec, [](const detail::field_view&, simdjson::ondemand::value& v) {
          const char* end = nullptr;
          return detail::skip_value(v, 1, end);
        });
    if (status_of_scan == detail::scan_status::ok) return copy;
  }
  std::string_view text = detail::trim_ws_end(body.substr(first));
  if (text.empty()) {
    return make("upstream returned status " + std::to_string(status) + " with an empty body",
                type_for(status), status);
  }
  return make(text, type_for(status), status);
}

void json_error::escape_into(std::string& out, std::string_view s) {
  // Upstream text can be anything (a Latin-1 error page): bytes that are not well-formed UTF-8
  // become U+FFFD, or the client would receive an error body that is not valid JSON.
  const bool utf8_ok = simdjson::validate_utf8(s.data(), s.size());
  std::size_t run = 0;  // start of the bytes copied as they are
  std::size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    std::size_t length = 1;
    if (c >= 0x80 && !utf8_ok) length = utf8_sequence_length(s, i);
    if (length != 0 && !needs_escape(c)) {
      i += length;
      continue;
    }
    out.append(s, run, i - run);
    if (length == 0) {
      out += "\\ufffd";
    } else {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        default: {
          static constexpr char hex[] = "0123456789abcdef";
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0xf];
        }
      }
    }
    ++i;
    run = i;
  }
  out.append(s, run, s.size() - run);
}

}  // namespace glm::protocol
