#include "protocol/layerwise_splicer.hpp"

#include "protocol/json_error.hpp"
#include "protocol/json_scan.hpp"
#include "protocol/request_splicer.hpp"

namespace glm::protocol {

namespace {

using detail::key_is;

constexpr std::string_view kv_key = R"("kv_transfer_params":)";
// After the prefill's kv_transfer_params. max_tokens and min_tokens are both 1 for the same
// reason as in the standard mode: the prefill must stop at exactly one token.
constexpr std::string_view prefill_limits = R"(,"stream":false,"max_tokens":1,"min_tokens":1)";
constexpr std::string_view max_completion_tail = R"(,"max_completion_tokens":1)";

bool dropped_from_prefill(std::string_view key) {
  return key_is(key, "kv_transfer_params") || key_is(key, "stream") || key_is(key, "max_tokens") ||
         key_is(key, "min_tokens") || key_is(key, "max_completion_tokens") ||
         key_is(key, "stream_options");
}

std::string join(const std::vector<std::string_view>& pieces) {
  std::size_t size = 0;
  for (auto p : pieces) size += p.size();
  std::string out;
  out.reserve(size);
  for (auto p : pieces) out += p;
  return out;
}

}  // namespace

std::string layerwise_splicer::decode_params(std::string_view metaserver_url) {
  std::string out = R"({"do_remote_decode":false,"do_remote_prefill":true,"metaserver":")";
  json_error::escape_into(out, metaserver_url);
  out += "\"}";
  return out;
}

void layerwise_splicer::decode_pieces(const client_request& req, std::string_view decode_params,
                                      std::vector<std::string_view>& out) {
  request_splicer::decode_pieces(req, decode_params, out);
}

std::string layerwise_splicer::decode_body(const client_request& req,
                                           std::string_view decode_params) {
  return request_splicer::decode_body(req, decode_params);
}

std::string layerwise_splicer::prefill_params(std::span<const metaserver_callback> callbacks) {
  if (callbacks.empty()) return {};
  const metaserver_callback& first = callbacks.front();
  if (callbacks.size() == 1) return first.params;

  std::size_t size = first.params.size() + 32;
  for (const auto& c : callbacks) size += c.request_id_json.size() + c.params.size() + 2;
  std::string out;
  out.reserve(size);
  // The first object's members, a batch member it may carry left out, then the batch.
  out += '{';
  bool any = false;
  for (const auto& m : first.members) {
    if (m.batch_key) continue;
    if (any) out += ',';
    out.append(first.params, m.begin, m.end - m.begin);
    any = true;
  }
  if (any) out += ',';
  out += R"("batch_kv_transfer_params":{)";
  for (std::size_t i = 0; i < callbacks.size(); ++i) {
    if (i > 0) out += ',';
    out += callbacks[i].request_id_json;
    out += ':';
    out += callbacks[i].params;
  }
  out += "}}";
  return out;
}

void layerwise_splicer::prefill_pieces(const client_request& req, std::string_view prefill_params,
                                       std::vector<std::string_view>& out) {
  // As request_splicer's splice: runs of kept members go out as single views of the body.
  out.clear();
  out.push_back("{");
  std::size_t i = 0;
  const std::size_t n = req.members.size();
  while (i < n) {
    if (dropped_from_prefill(req.members[i].key)) {
      ++i;
      continue;
    }
    const std::size_t first = i;
    while (i + 1 < n && !dropped_from_prefill(req.members[i + 1].key)) ++i;
    out.push_back(
        req.body.substr(req.members[first].begin, req.members[i].end - req.members[first].begin));
    out.push_back(",");
    ++i;
  }
  out.push_back(kv_key);
  out.push_back(prefill_params);
  out.push_back(prefill_limits);
  if (req.has_max_completion_tokens) out.push_back(max_completion_tail);
  out.push_back("}");
}

std::string layerwise_splicer::prefill_body(const client_request& req,
                                            std::string_view prefill_params) {
  std::vector<std::string_view> pieces;
  prefill_pieces(req, prefill_params, pieces);
  return join(pieces);
}

}  // namespace glm::protocol
