#include "protocol/response_rewriter.hpp"

#include <optional>
#include <string>
#include <utility>

#include "protocol/choice_text_scanner.hpp"
#include "protocol/json_scan.hpp"
#include "protocol/substring_finder.hpp"

namespace glm::protocol {
namespace {

namespace ondemand = simdjson::ondemand;

// A copy of `text` with simdjson's padding, so scanning it never reallocates.
std::string padded_copy(std::string_view text) {
  std::string copy;
  copy.reserve(text.size() + simdjson::SIMDJSON_PADDING);
  copy.assign(text);
  return copy;
}

// Calls on_element(ondemand::value&) for each element of the array `v`, which must consume it
// completely, and sets `end` one past the closing bracket. `depth` is the array's own.
template <class OnElement>
simdjson::error_code for_each_element(ondemand::value& v, int depth, const char*& end,
                                      OnElement&& on_element) {
  if (depth > detail::max_depth) return simdjson::DEPTH_ERROR;
  ondemand::array array;
  if (auto ec = v.get_array().get(array)) return ec;
  for (auto element_result : array) {
    ondemand::value element;
    if (auto ec = std::move(element_result).get(element)) return ec;
    if (auto ec = on_element(element)) return ec;
  }
  return detail::container_end(v, end);
}

simdjson::error_code type_of(ondemand::value& v, ondemand::json_type& type) {
  return v.type().get(type);
}

// The raw text between the quotes of the string token [begin, end), or nullopt if it is not a
// string.
std::optional<std::string_view> string_body(const char* begin, const char* end) {
  if (end - begin < 2 || *begin != '"') return std::nullopt;
  return std::string_view(begin + 1, std::size_t(end - begin - 2));
}

// True when every "usage" key in `json` has the value null (or there is none): then there is no
// usage object to fix, whatever else the text holds. vLLM sends "usage":null in every token chunk
// of a stream that asked for usage; this spares them the parse. Exact: a quote cannot occur
// unescaped inside a JSON string, so "usage" followed by a colon is a key, or the text is not
// JSON, which is left as it is too.
bool every_usage_is_null(std::string_view json) {
  static constexpr std::string_view key = "\"usage\"";
  static constexpr substring_finder usage_key(key);
  constexpr std::string_view blank = " \t\r\n";
  for (auto at = usage_key.find(json); at != std::string_view::npos;
       at = usage_key.find(json, at + 1)) {
    std::size_t colon = json.find_first_not_of(blank, at + key.size());
    if (colon == std::string_view::npos || json[colon] != ':') continue;  // not a key
    std::size_t value = json.find_first_not_of(blank, colon + 1);
    if (value == std::string_view::npos || json.compare(value, 4, "null") != 0) return false;
  }
  return true;
}

// Where usage.prompt_tokens_details.cached_tokens is, or would go, in a JSON object (offsets).
struct usage_place {
  bool usage_object = false;   // the last "usage" is an object
  std::size_t usage_open = 0;  // offset of its '{'
  bool usage_empty = true;     // ... which has no member
  bool details = false;        // it has a "prompt_tokens_details" member
  std::size_t details_begin = 0, details_end = 0;
  bool details_object = false;  // ... which is an object
  bool details_empty = true;
  bool tokens = false;  // ... with a "cached_tokens" member
  std::size_t tokens_begin = 0, tokens_end = 0;
};

// One pass over a padded copy; a later duplicate key wins, as in a JSON parser. nullopt when the
// text is not a valid JSON object or its usage is not an object.
std::optional<usage_place> find_usage_place(std::string_view json) {
  usage_place at;
  std::string copy = padded_copy(json);
  simdjson::error_code ec;
  auto status =
      detail::scan_object(copy, ec, [&](const detail::field_view& field, ondemand::value& value) {
        const char* base = copy.data();  // read here: scan_object pads the copy first
        const char* end = nullptr;
        if (!detail::key_is(field.key, "usage")) return detail::skip_value(value, 1, end);
        at = usage_place{};
        ondemand::json_type type;
        if (auto e = type_of(value, type)) return e;
        if (type != ondemand::json_type::object) return detail::skip_value(value, 1, end);
        at.usage_object = true;
        at.usage_open = std::size_t(field.value_begin - base);
        return detail::for_each_field(
            value, 1, end, [&](const detail::field_view& member, ondemand::value& v) {
              at.usage_empty = false;
              const char* member_end = nullptr;
              if (!detail::key_is(member.key, "prompt_tokens_details")) {
                return detail::skip_value(v, 2, member_end);
              }
              ondemand::json_type member_type;
              if (auto e = type_of(v, member_type)) return e;
              at.details = true;
              at.details_object = member_type == ondemand::json_type::object;
              at.details_empty = true;
              at.tokens = false;
              simdjson::error_code walked = simdjson::SUCCESS;
              if (at.details_object) {
                walked = detail::for_each_field(
                    v, 2, member_end, [&](const detail::field_view& inner, ondemand::value& iv) {
                      at.details_empty = false;
                      const char* inner_end = nullptr;
                      if (auto e = detail::skip_value(iv, 3, inner_end)) return e;
                      if (detail::key_is(inner.key, "cached_tokens")) {
                        at.tokens = true;
                        at.tokens_begin = std::size_t(inner.value_begin - base);
                        at.tokens_end = std::size_t(inner_end - base);
                      }
                      return simdjson::SUCCESS;
                    });
              } else {
                walked = detail::skip_value(v, 2, member_end);
              }
              at.details_begin = std::size_t(member.value_begin - base);
              at.details_end = std::size_t(member_end - base);
              return walked;
            });
      });
  if (status != detail::scan_status::ok || !at.usage_object) return std::nullopt;
  return at;
}

// `json` with the figure written at `at`: one byte range replaced, every other byte unchanged.
std::string with_figure_at(std::string_view json, const usage_place& at, std::int64_t cached) {
  const std::string number = std::to_string(cached);
  std::size_t begin = 0;
  std::size_t end = 0;
  std::string value;
  if (!at.details) {  // created as usage's first member
    begin = end = at.usage_open + 1;
    value = R"("prompt_tokens_details":{"cached_tokens":)" + number + "}";
    if (!at.usage_empty) value += ',';
  } else if (!at.details_object) {  // null (or anything odd) becomes an object
    begin = at.details_begin;
    end = at.details_end;
    value = R"({"cached_tokens":)" + number + "}";
  } else if (at.tokens) {
    begin = at.tokens_begin;
    end = at.tokens_end;
    value = number;
  } else {  // added as the details' first member
    begin = end = at.details_begin + 1;
    value = R"("cached_tokens":)" + number;
    if (!at.details_empty) value += ',';
  }
  std::string out;
  out.reserve(json.size() - (end - begin) + value.size());
  out.append(json.substr(0, begin)).append(value).append(json.substr(end));
  return out;
}

}  // namespace

std::optional<std::string> response_rewriter::with_cached_tokens(std::string_view json,
                                                                 std::int64_t cached) {
  if (every_usage_is_null(json)) return std::nullopt;
  auto at = find_usage_place(json);
  if (!at) return std::nullopt;
  return with_figure_at(json, *at, cached);
}

std::string_view response_rewriter::event_data(std::string_view event) {
  std::size_t line = 0;
  while (line < event.size()) {
    std::size_t eol = event.find('\n', line);
    if (eol == std::string_view::npos) eol = event.size();
    std::string_view text = event.substr(line, eol - line);
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    if (text.starts_with("data:")) {
      text.remove_prefix(5);
      if (!text.empty() && text.front() == ' ') text.remove_prefix(1);
      return text;
    }
    line = eol + 1;
  }
  return {};
}

std::optional<std::string> response_rewriter::event_with_cached_tokens(std::string_view event,
                                                                       std::int64_t cached) {
  std::string_view data = event_data(event);
  if (data.empty() || data.front() != '{') return std::nullopt;
  auto rewritten = with_cached_tokens(data, cached);
  if (!rewritten) return std::nullopt;
  std::size_t at = static_cast<std::size_t>(data.data() - event.data());
  std::string out;
  out.reserve(event.size() + rewritten->size() - data.size());
  out.append(event.substr(0, at)).append(*rewritten).append(event.substr(at + data.size()));
  return out;
}

bool response_rewriter::is_recomputed(std::string_view json) {
  // One pass over a padded copy; the last "choices" member counts, as in a JSON parser.
  std::string copy = padded_copy(json);
  bool recomputed = false;
  simdjson::error_code ec;
  auto status =
      detail::scan_object(copy, ec, [&](const detail::field_view& field, ondemand::value& value) {
        const char* end = nullptr;
        if (!detail::key_is(field.key, "choices")) return detail::skip_value(value, 1, end);
        recomputed = false;
        ondemand::json_type type;
        if (auto e = type_of(value, type)) return e;
        if (type != ondemand::json_type::array) return detail::skip_value(value, 1, end);
        return for_each_element(value, 1, end, [&](ondemand::value& choice) {
          const char* choice_end = nullptr;
          ondemand::json_type choice_type;
          if (auto e = type_of(choice, choice_type)) return e;
          if (choice_type != ondemand::json_type::object) {
            return detail::skip_value(choice, 2, choice_end);
          }
          bool this_one = false;  // the choice's last "stop_reason" is "recomputed"
          auto walked = detail::for_each_field(
              choice, 2, choice_end, [&](const detail::field_view& member, ondemand::value& v) {
                const char* member_end = nullptr;
                if (auto e = detail::skip_value(v, 3, member_end)) return e;
                if (detail::key_is(member.key, "stop_reason")) {
                  auto reason = string_body(member.value_begin, member_end);
                  // key_is compares a raw string with escapes by what it decodes to.
                  this_one = reason && detail::key_is(*reason, "recomputed");
                }
                return simdjson::SUCCESS;
              });
          recomputed |= this_one;
          return walked;
        });
      });
  return status == detail::scan_status::ok && recomputed;
}

void response_rewriter::append_choice_text(std::string_view json, std::string& out) {
  // Every streamed event comes here: the hand-written pass settles the usual ones.
  const auto fast = choice_text_scanner::scan(json);
  if (fast.what == choice_text_scanner::outcome::text) out.append(fast.text);
  if (fast.what == choice_text_scanner::outcome::unsure) append_choice_text_general(json, out);
}

void response_rewriter::append_choice_text_general(std::string_view json, std::string& out) {
  // One pass over a padded copy, validating it whole. Only choices[0] is looked at, and only when
  // its "index" (if any) is 0: a stream with n > 1 sends other choices in chunks of their own.
  // The value is copied as its raw token between the quotes, escapes included.
  std::string copy = padded_copy(json);
  std::optional<std::string_view> text;
  simdjson::error_code ec;
  auto status =
      detail::scan_object(copy, ec, [&](const detail::field_view& field, ondemand::value& value) {
        const char* end = nullptr;
        if (!detail::key_is(field.key, "choices")) return detail::skip_value(value, 1, end);
        text.reset();
        ondemand::json_type type;
        if (auto e = type_of(value, type)) return e;
        if (type != ondemand::json_type::array) return detail::skip_value(value, 1, end);
        bool first = true;
        return for_each_element(value, 1, end, [&](ondemand::value& choice) {
          const char* choice_end = nullptr;
          ondemand::json_type choice_type;
          if (auto e = type_of(choice, choice_type)) return e;
          if (!first || choice_type != ondemand::json_type::object) {
            first = false;
            return detail::skip_value(choice, 2, choice_end);
          }
          first = false;
          bool index_zero = true;
          std::optional<std::string_view> choice_text, delta_content, message_content;
          auto walked = detail::for_each_field(
              choice, 2, choice_end, [&](const detail::field_view& member, ondemand::value& v) {
                const char* member_end = nullptr;
                const bool delta = detail::key_is(member.key, "delta");
                const bool message = !delta && detail::key_is(member.key, "message");
                ondemand::json_type member_type;
                if (auto e = type_of(v, member_type)) return e;
                if ((delta || message) && member_type == ondemand::json_type::object) {
                  auto& content = delta ? delta_content : message_content;
                  content.reset();
                  return detail::for_each_field(
                      v, 3, member_end,
                      [&](const detail::field_view& inner, ondemand::value& inner_value) {
                        const char* inner_end = nullptr;
                        if (auto e = detail::skip_value(inner_value, 4, inner_end)) return e;
                        if (detail::key_is(inner.key, "content")) {
                          content = string_body(inner.value_begin, inner_end);
                        }
                        return simdjson::SUCCESS;
                      });
                }
                if (auto e = detail::skip_value(v, 3, member_end)) return e;
                std::string_view token(member.value_begin,
                                       std::size_t(member_end - member.value_begin));
                if (delta) {
                  delta_content.reset();
                } else if (message) {
                  message_content.reset();
                } else if (detail::key_is(member.key, "index")) {
                  index_zero = token == "0";
                } else if (detail::key_is(member.key, "text")) {
                  choice_text = string_body(member.value_begin, member_end);
                }
                return simdjson::SUCCESS;
              });
          if (index_zero) {
            text = choice_text ? choice_text : delta_content ? delta_content : message_content;
          }
          return walked;
        });
      });
  if (status == detail::scan_status::ok && text) out.append(*text);
}

}  // namespace glm::protocol
