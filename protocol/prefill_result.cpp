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
  auto read_cached = [&cached](const detail::field_view& field, ondemand::value& value, int depth) {
    const char* end = nullptr;
    cached = 0;
    if (auto ec = detail::skip_value(value, depth, end)) return ec;
    std::string_view token(field.value_begin, std::size_t(end - field.value_begin));
    std::int64_t n = 0;
    if (detail::valid_number(token) && detail::parse_int64(token, n)) cached = n;
    return simdjson::SUCCESS;
  };
  auto read_details = [&](const detail::field_view&, ondemand::value& value, int depth) {
    return descend(value, depth, "cached_tokens", cached, read_cached);
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
          return descend(value, 1, "prompt_tokens_details", cached, read_details);
        }
        const char* end = nullptr;
        return detail::skip_value(value, 1, end);
      });
  if (status != detail::scan_status::ok) {
    out = prefill_result{};
    return detail::describe(status, scan_ec, "prefill response");
  }
  out.cached_tokens = cached;
  return std::nullopt;
}

}  // namespace glm::protocol
