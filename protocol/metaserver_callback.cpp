#include "protocol/metaserver_callback.hpp"

#include "protocol/json_scan.hpp"

namespace glm::protocol {

namespace {
using detail::key_is;
namespace ondemand = simdjson::ondemand;
// The key under which vllm-ascend's layerwise proxy batches the callbacks of several prompts
// (BATCH_KV_TRANSFER_PARAMS in its sfa_pd_rd2h protocol).
constexpr std::string_view batch_key = "batch_kv_transfer_params";
}  // namespace

std::optional<std::string> metaserver_callback::parse(std::string& body, metaserver_callback& out) {
  out = metaserver_callback{};
  // Offsets are taken from the body and rebased on the object's first byte at the end.
  std::vector<member_span> members;
  std::string_view id_token;  // the last "request_id" member's value, if a string
  bool has_id = false;
  bool id_is_string = false;
  std::string id;
  simdjson::error_code scan_ec = simdjson::SUCCESS;
  auto status = detail::scan_object(
      body, scan_ec,
      [&](const detail::field_view& field, ondemand::value& value) -> simdjson::error_code {
        const char* base = body.data();
        const char* end = nullptr;
        if (key_is(field.key, "request_id")) {
          has_id = true;
          ondemand::json_type type;
          if (auto ec = value.type().get(type)) return ec;
          id_is_string = type == ondemand::json_type::string;
          if (id_is_string) {
            const std::string_view token = detail::trim_ws_end(value.raw_json_token());
            if (!detail::valid_string_token(token)) return simdjson::STRING_ERROR;
            // get_string unescapes (and checks the escapes decode, surrogates included).
            std::string_view decoded;
            if (auto ec = value.get_string().get(decoded)) return ec;
            id.assign(decoded);
            id_token = token;
            end = token.data() + token.size();
          } else if (auto ec = detail::skip_value(value, 1, end)) {
            return ec;
          }
        } else if (auto ec = detail::skip_value(value, 1, end)) {
          return ec;
        }
        members.push_back(member_span{std::size_t(field.begin - base), std::size_t(end - base),
                                      key_is(field.key, batch_key)});
        return simdjson::SUCCESS;
      });
  if (status != detail::scan_status::ok) {
    return detail::describe(status, scan_ec, "metaserver request body");
  }
  if (!has_id) return std::string(R"(metaserver request body has no "request_id")");
  if (!id_is_string) return std::string(R"("request_id" must be a string)");

  // The object without the whitespace around it: the scan accepted nothing else there.
  std::size_t first = 0;
  while (first < body.size() && detail::is_json_ws(body[first])) ++first;
  const std::string_view object = detail::trim_ws_end(std::string_view(body).substr(first));
  out.params.assign(object);
  out.request_id = std::move(id);
  out.request_id_json.assign(id_token);
  out.members = std::move(members);
  for (auto& m : out.members) {
    m.begin -= first;
    m.end -= first;
  }
  return std::nullopt;
}

}  // namespace glm::protocol
