#include "protocol/request_splicer.hpp"

#include <cstdint>

#include "protocol/json_scan.hpp"

namespace glm::protocol {

namespace {

using detail::key_is;
namespace ondemand = simdjson::ondemand;

// Appended to every prefill body. kv_transfer_params asks the prefiller to keep the KV cache for a
// remote decoder; max_tokens and min_tokens are both 1 because the Mooncake connector only returns
// transfer parameters when the prefill stopped at its token limit.
constexpr std::string_view prefill_tail =
    R"("kv_transfer_params":{"do_remote_decode":true,"do_remote_prefill":false,)"
    R"("remote_engine_id":null,"remote_block_ids":null,"remote_host":null,"remote_port":null},)"
    R"("stream":false,"max_tokens":1,"min_tokens":1)";
constexpr std::string_view max_completion_tail = R"(,"max_completion_tokens":1)";
constexpr std::string_view kv_key = R"("kv_transfer_params":)";

bool dropped_from_prefill(std::string_view key) {
  return key_is(key, "kv_transfer_params") || key_is(key, "stream") || key_is(key, "max_tokens") ||
         key_is(key, "min_tokens") || key_is(key, "max_completion_tokens") ||
         key_is(key, "stream_options");
}

bool dropped_from_decode(std::string_view key) {
  return key_is(key, "kv_transfer_params");
}

// "{" + the kept members joined by "," + ("," if any were kept) + tail + "}", sized up front so
// the copy of a large prompt happens once into one allocation.
template <class Drop>
std::string splice(const client_request& req, Drop drop, std::string_view tail_a,
                   std::string_view tail_b) {
  std::size_t size = 2 + tail_a.size() + tail_b.size();
  std::size_t kept = 0;
  for (const member_range& m : req.members) {
    if (drop(m.key)) continue;
    size += m.end - m.begin;
    ++kept;
  }
  size += kept;  // a comma after each kept member, before the tail
  std::string out;
  out.reserve(size);
  out += '{';
  for (const member_range& m : req.members) {
    if (drop(m.key)) continue;
    out.append(req.body, m.begin, m.end - m.begin);
    out += ',';
  }
  out += tail_a;
  out += tail_b;
  out += '}';
  return out;
}

}  // namespace

// Keys are compared by the name they decode to, as vLLM's parser sees them: "str\u0065am" is
// "stream". `key` itself is a plain (unescaped) ASCII name.
const member_range* client_request::find(std::string_view key) const {
  for (auto it = members.rbegin(); it != members.rend(); ++it) {
    if (key_is(it->key, key)) return &*it;
  }
  return nullptr;
}

std::optional<std::string> request_splicer::parse(std::string& body, client_request& out) {
  out = client_request{};
  simdjson::error_code scan_ec = simdjson::SUCCESS;
  auto status = detail::scan_object(
      body, scan_ec,
      [&](const detail::field_view& field, ondemand::value& value) -> simdjson::error_code {
        const char* base = body.data();  // read here: padding the body may have moved it
        const char* end = nullptr;
        // A later duplicate overrides an earlier one, as in the JSON parser vLLM uses.
        if (key_is(field.key, "stream")) {
          if (auto ec = detail::skip_value(value, 1, end)) return ec;
          out.stream =
              std::string_view(field.value_begin, std::size_t(end - field.value_begin)) == "true";
        } else if (key_is(field.key, "stream_options")) {
          out.include_usage = false;
          ondemand::json_type type;
          if (auto ec = value.type().get(type)) return ec;
          if (type == ondemand::json_type::object) {
            auto on_option = [&](const detail::field_view& option, ondemand::value& option_value) {
              const char* option_end = nullptr;
              auto ec = detail::skip_value(option_value, 2, option_end);
              if (!ec && key_is(option.key, "include_usage")) {
                out.include_usage =
                    std::string_view(option.value_begin,
                                     std::size_t(option_end - option.value_begin)) == "true";
              }
              return ec;
            };
            if (auto ec = detail::for_each_field(value, 1, end, on_option)) return ec;
          } else if (auto ec = detail::skip_value(value, 1, end)) {
            return ec;
          }
        } else if (key_is(field.key, "max_tokens")) {
          if (auto ec = detail::skip_value(value, 1, end)) return ec;
          std::int64_t n = 0;
          std::string_view token(field.value_begin, std::size_t(end - field.value_begin));
          out.max_tokens = detail::valid_number(token) && detail::parse_int64(token, n)
                               ? std::optional<std::int64_t>(n)
                               : std::nullopt;
        } else {
          if (auto ec = detail::skip_value(value, 1, end)) return ec;
          if (key_is(field.key, "max_completion_tokens")) out.has_max_completion_tokens = true;
          if (key_is(field.key, "prompt")) out.has_prompt = true;
          if (key_is(field.key, "messages")) out.has_messages = true;
        }
        out.members.push_back(member_range{field.key, std::size_t(field.begin - base),
                                           std::size_t(end - base),
                                           std::size_t(field.value_begin - base)});
        return simdjson::SUCCESS;
      });
  if (status != detail::scan_status::ok) {
    out = client_request{};
    return detail::describe(status, scan_ec, "request body");
  }
  if (!out.has_prompt && !out.has_messages) {
    out = client_request{};
    return std::string(R"(request body must contain "prompt" or "messages")");
  }
  out.body = body;
  return std::nullopt;
}

std::string request_splicer::prefill_body(const client_request& req) {
  return splice(req, dropped_from_prefill, prefill_tail,
                req.has_max_completion_tokens ? max_completion_tail : std::string_view());
}

std::string request_splicer::decode_body(const client_request& req,
                                         std::string_view kv_transfer_params) {
  if (kv_transfer_params.empty()) return std::string(req.body);
  // The prefiller's bytes go straight into the one allocation, never through a JSON tree.
  return splice(req, dropped_from_decode, kv_key, kv_transfer_params);
}

}  // namespace glm::protocol
