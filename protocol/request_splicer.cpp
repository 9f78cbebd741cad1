#include "protocol/request_splicer.hpp"

#include <cstdint>
#include <initializer_list>

#include "protocol/json_scan.hpp"

namespace glm::protocol {

static_assert(request_splicer::padding >= simdjson::SIMDJSON_PADDING);

namespace {

using detail::key_is;
namespace ondemand = simdjson::ondemand;

// The standard prefill's kv_transfer_params: the prefiller keeps the KV cache for a remote
// decoder.
constexpr std::string_view standard_prefill_params =
    R"({"do_remote_decode":true,"do_remote_prefill":false,)"
    R"("remote_engine_id":null,"remote_block_ids":null,"remote_host":null,"remote_port":null})";
// After every prefill's kv_transfer_params. max_tokens and min_tokens are both 1 because the
// Mooncake connector only returns transfer parameters when the prefill stopped at its token limit.
constexpr std::string_view prefill_limits = R"(,"stream":false,"max_tokens":1,"min_tokens":1)";
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

// "{" + the kept members + "," + the tail pieces + "}" as views, for a gather write. Members
// that are kept and adjacent in the body go out as one view of the body, separators and all, so
// the client's bytes (a 1 MiB prompt) are never copied: typically "{", one run, ",", the tail, "}".
// Empty tail pieces are left out.
template <class Drop>
void splice_pieces(const client_request& req, Drop drop,
                   std::initializer_list<std::string_view> tail,
                   std::vector<std::string_view>& out) {
  out.clear();
  out.push_back("{");
  std::size_t i = 0;
  const std::size_t n = req.members.size();
  while (i < n) {
    if (drop(req.members[i].key)) {
      ++i;
      continue;
    }
    std::size_t first = i;
    while (i + 1 < n && !drop(req.members[i + 1].key)) ++i;
    out.push_back(
        req.body.substr(req.members[first].begin, req.members[i].end - req.members[first].begin));
    out.push_back(",");
    ++i;
  }
  for (std::string_view piece : tail) {
    if (!piece.empty()) out.push_back(piece);
  }
  out.push_back("}");
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
  // The proxy itself acts on stream and stream_options (SSE or JSON relay, the usage rewrite), so
  // it must read them as the backend does. vLLM's pydantic would coerce "true", 1 or "yes" to
  // true, which the proxy would take for false: it would then relay an SSE stream as a JSON body.
  // Anything but a boolean or null is refused instead. A later duplicate overrides, so each
  // occurrence resets its flag.
  bool bad_stream = false;
  bool bad_options = false;
  bool bad_usage = false;
  auto is_bool_or_null = [](std::string_view token) {
    return token == "true" || token == "false" || token == "null";
  };
  auto status = detail::scan_object(
      body, scan_ec,
      [&](const detail::field_view& field, ondemand::value& value) -> simdjson::error_code {
        const char* base = body.data();  // read here: padding the body may have moved it
        const char* end = nullptr;
        // A later duplicate overrides an earlier one, as in the JSON parser vLLM uses.
        if (key_is(field.key, "stream")) {
          if (auto ec = detail::skip_value(value, 1, end)) return ec;
          std::string_view token(field.value_begin, std::size_t(end - field.value_begin));
          out.stream = token == "true";
          bad_stream = !is_bool_or_null(token);
        } else if (key_is(field.key, "stream_options")) {
          out.include_usage = false;
          bad_usage = false;
          ondemand::json_type type;
          if (auto ec = value.type().get(type)) return ec;
          if (type == ondemand::json_type::object) {
            bad_options = false;
            auto on_option = [&](const detail::field_view& option, ondemand::value& option_value) {
              const char* option_end = nullptr;
              auto ec = detail::skip_value(option_value, 2, option_end);
              if (!ec && key_is(option.key, "include_usage")) {
                std::string_view token(option.value_begin,
                                       std::size_t(option_end - option.value_begin));
                out.include_usage = token == "true";
                bad_usage = !is_bool_or_null(token);
              }
              return ec;
            };
            if (auto ec = detail::for_each_field(value, 1, end, on_option)) return ec;
          } else {
            if (auto ec = detail::skip_value(value, 1, end)) return ec;
            bad_options =
                std::string_view(field.value_begin, std::size_t(end - field.value_begin)) != "null";
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
  if (bad_stream || bad_options || bad_usage) {
    out = client_request{};
    return std::string(bad_stream ? R"("stream" must be true, false or null)"
                       : bad_options
                           ? R"("stream_options" must be an object or null)"
                           : R"("stream_options.include_usage" must be true, false or null)");
  }
  if (!out.has_prompt && !out.has_messages) {
    out = client_request{};
    return std::string(R"(request body must contain "prompt" or "messages")");
  }
  out.body = body;
  return std::nullopt;
}

void request_splicer::prefill_pieces(const client_request& req,
                                     std::vector<std::string_view>& out) {
  prefill_pieces(req, standard_prefill_params, out);
}

void request_splicer::prefill_pieces(const client_request& req, std::string_view kv_transfer_params,
                                     std::vector<std::string_view>& out) {
  splice_pieces(req, dropped_from_prefill,
                {kv_key, kv_transfer_params, prefill_limits,
                 req.has_max_completion_tokens ? max_completion_tail : std::string_view()},
                out);
}

void request_splicer::decode_pieces(const client_request& req, std::string_view kv_transfer_params,
                                    std::vector<std::string_view>& out) {
  if (kv_transfer_params.empty()) {
    out.assign({req.body});
    return;
  }
  // The prefiller's bytes go out as they came, never through a JSON tree.
  splice_pieces(req, dropped_from_decode, {kv_key, kv_transfer_params}, out);
}

std::string request_splicer::prefill_body(const client_request& req) {
  std::vector<std::string_view> pieces;
  prefill_pieces(req, pieces);
  return join(pieces);
}

std::string request_splicer::join(const std::vector<std::string_view>& pieces) {
  std::size_t size = 0;
  for (auto p : pieces) size += p.size();
  std::string out;
  out.reserve(size);
  for (auto p : pieces) out += p;
  return out;
}

std::string request_splicer::decode_body(const client_request& req,
                                         std::string_view kv_transfer_params) {
  std::vector<std::string_view> pieces;
  decode_pieces(req, kv_transfer_params, pieces);
  return join(pieces);
}

}  // namespace glm::protocol
