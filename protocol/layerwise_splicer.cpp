#include "protocol/layerwise_splicer.hpp"

#include "protocol/json_error.hpp"
#include "protocol/request_splicer.hpp"

namespace glm::protocol {

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
  request_splicer::prefill_pieces(req, prefill_params, out);
}

std::string layerwise_splicer::prefill_body(const client_request& req,
                                            std::string_view prefill_params) {
  std::vector<std::string_view> pieces;
  prefill_pieces(req, prefill_params, pieces);
  return request_splicer::join(pieces);
}

}  // namespace glm::protocol
