#include "protocol/prefill_result.hpp"

#include <string_view>

#include "protocol/json_scan.hpp"

namespace glm::protocol {

namespace {

using detail::key_is;
namespace ondemand = simdjson::ondemand;

// The reference proxy forwards kv_transfer_params only when Python finds it truthy, so null,
// false, 0, "", [] and {} all mean "none" (the decoder then prefills by itself).
bool is_falsy(std::string_view raw) {
  if (raw.empty() || raw == "null" || raw == "false" || raw == "\"\"") return true;
  if (raw.front() == '{' || raw.front() == '[') {
    std::string_view inside = raw.substr(1, raw.size() - 2);
    for (char c : inside) {
      if (!detail::is_json_ws(c)) return false;
    }
    return true;
  }
  if (raw.front() == '-' || (raw.front() >= '0' && raw.front() <= '9')) {
    // Zero when every mantissa digit is 0, whatever the exponent.
    for (char c : raw) {
      if (c == 'e' || c == 'E') break;
      if (c >= '1' && c <= '9') return false;
    }
    return true;
  }
  return false;
}

// Sets `cached` from an object value holding "key": <next level>; absent or non-object means 0.
template <class Inner>
simdjson::error_code descend(ondemand::value& value, int depth, std::string_view key,
                             std::int64_t& cached, Inner inner) {
  ondemand::json_type type;
  if (auto ec = value.type().get(type)) return ec;
  const char* end = nullptr;
  cached = 0;
  if (type != ondemand::json_type::object) return detail::skip_value(value, depth, end);
  return detail::for_each_field(value, depth, end,
                                [&](const detail::field_view& field, ondemand::value& child) {
                                  // Later duplicates win, as in Python's json; each one starts
                                  // again from 0.
                                  if (key_is(field.key, key)) return inner(field, child, depth + 1);
                                  const char* child_end = nullptr;
                                  return detail::skip_value(child, depth + 1, child_end);
                                });
}

}  // namespace

std::optional<std::string> prefill_result::parse(std::string& body, prefill_result& out) {
  out = prefill_result{};
  std::int64_t cached = 0;
  std::optional<std::int64_t> prompt;
  // An integer value into `target`; anything else leaves `fallback` there.
  auto read_int = [](const detail::field_view& field, ondemand::value& value, int depth,
                     auto& target, auto fallback) {
    const char* end = nullptr;
    target = fallback;
    if (auto ec = detail::skip_value(value, depth, end)) return ec;
    std::string_view token(field.value_begin, std::size_t(end - field.value_begin));
    std::int64_t n = 0;
    if (detail::valid_number(token) && detail::parse_int64(token, n)) target = n;
    return simdjson::SUCCESS;
  };
  auto read_cached = [&](const detail::field_view& field, ondemand::value& value, int depth) {
    return read_int(field, value, depth, cached, std::int64_t{0});
  };
  // usage: {"prompt_tokens": N, "prompt_tokens_details": {"cached_tokens": M}, ...}
  auto read_usage = [&](ondemand::value& value) -> simdjson::error_code {
    ondemand::json_type type;
    if (auto ec = value.type().get(type)) return ec;
    const char* end = nullptr;
    cached = 0;
    prompt.reset();
    if (type != ondemand::json_type::object) return detail::skip_value(value, 1, end);
    return detail::for_each_field(
        value, 1, end, [&](const detail::field_view& field, ondemand::value& child) {
          if (key_is(field.key, "prompt_tokens")) {
            return read_int(field, child, 2, prompt, std::optional<std::int64_t>{});
          }
          if (key_is(field.key, "prompt_tokens_details")) {
            return descend(child, 2, "cached_tokens", cached, read_cached);
          }
          const char* child_end = nullptr;
          return detail::skip_value(child, 2, child_end);
        });
  };

  simdjson::error_code scan_ec = simdjson::SUCCESS;
  auto status = detail::scan_object(
      body, scan_ec,
      [&](const detail::field_view& field, ondemand::value& value) -> simdjson::error_code {
        if (key_is(field.key, "kv_transfer_params")) {
          const char* end = nullptr;
          if (auto ec = detail::skip_value(value, 1, end)) return ec;
          std::string_view raw(field.value_begin, std::size_t(end - field.value_begin));
          if (is_falsy(raw)) {
            out.kv_transfer_params.clear();
          } else {
            out.kv_transfer_params.assign(raw);
          }
          return simdjson::SUCCESS;
        }
        if (key_is(field.key, "usage")) {
          return read_usage(value);
        }
        const char* end = nullptr;
        return detail::skip_value(value, 1, end);
      });
  if (status != detail::scan_status::ok) {
    out = prefill_result{};
    return detail::describe(status, scan_ec, "prefill response");
  }
  out.cached_tokens = cached;
  out.prompt_tokens = prompt;
  return std::nullopt;
}

}  // namespace glm::protocol
