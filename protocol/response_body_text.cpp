// response_rewriter's helpers for a whole non-stream answer after a recompute.
#include <optional>
#include <string>

#include "protocol/json_scan.hpp"
#include "protocol/response_rewriter.hpp"

namespace glm::protocol {
namespace {

namespace ondemand = simdjson::ondemand;

// Offset of the first byte inside choice 0's text (or message content) string. vLLM writes
// compact JSON with choice 0 first, so the first "text" or "content" string is choice 0's; this
// runs once per non-stream answer that followed a recompute.
std::optional<std::size_t> choice_text_start(std::string_view json) {
  std::size_t choices = json.find("\"choices\"");
  if (choices == std::string_view::npos) return std::nullopt;
  for (std::string_view key : {std::string_view("\"text\""), std::string_view("\"content\"")}) {
    std::size_t at = json.find(key, choices);
    if (at == std::string_view::npos) continue;
    std::size_t p = json.find_first_not_of(" \t\r\n", at + key.size());
    if (p == std::string_view::npos || json[p] != ':') continue;
    p = json.find_first_not_of(" \t\r\n", p + 1);
    if (p == std::string_view::npos || json[p] != '"') continue;
    return p + 1;
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> response_rewriter::with_choice_text_prefix(std::string_view json,
                                                                      std::string_view prefix) {
  auto start = choice_text_start(json);
  if (!start) return std::nullopt;
  std::string out;
  out.reserve(json.size() + prefix.size());
  out.append(json.substr(0, *start)).append(prefix).append(json.substr(*start));
  return out;
}

std::optional<std::int64_t> response_rewriter::completion_tokens(std::string_view json) {
  std::string copy;
  copy.reserve(json.size() + simdjson::SIMDJSON_PADDING);
  copy.assign(json);
  std::optional<std::int64_t> tokens;
  simdjson::error_code ec;
  auto status =
      detail::scan_object(copy, ec, [&](const detail::field_view& field, ondemand::value& value) {
        const char* end = nullptr;
        if (!detail::key_is(field.key, "usage")) return detail::skip_value(value, 1, end);
        ondemand::json_type type;
        if (auto e = value.type().get(type)) return e;
        if (type != ondemand::json_type::object) return detail::skip_value(value, 1, end);
        return detail::for_each_field(
            value, 1, end, [&](const detail::field_view& member, ondemand::value& v) {
              const char* member_end = nullptr;
              if (auto e = detail::skip_value(v, 2, member_end)) return e;
              std::int64_t n = 0;
              if (detail::key_is(member.key, "completion_tokens") &&
                  detail::parse_int64(
                      std::string_view(member.value_begin,
                                       std::size_t(member_end - member.value_begin)),
                      n)) {
                tokens = n;
              }
              return simdjson::SUCCESS;
            });
      });
  if (status != detail::scan_status::ok) return std::nullopt;
  return tokens;
}

}  // namespace glm::protocol
