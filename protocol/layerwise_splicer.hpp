#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/client_request.hpp"
#include "protocol/metaserver_callback.hpp"

namespace glm::protocol {

// The two backend bodies of vllm-ascend's layerwise PD mode (Mooncake layerwise connector), where
// the decoder is asked first and calls the proxy's metaserver back once it has allocated the KV
// blocks; only then is the prefill sent, and the prefiller pushes the KV cache layer by layer.
// Built by splicing like request_splicer: the client's bytes are never re-serialized, and a
// callback's posted object reaches the prefiller byte for byte.
//
// Stateless and thread-safe.
class layerwise_splicer {
 public:
  // The decode request's kv_transfer_params:
  // {"do_remote_decode":false,"do_remote_prefill":true,"metaserver":"<metaserver_url>"}, the URL
  // escaped as a JSON string. The same for every request: build it once at start.
  static std::string decode_params(std::string_view metaserver_url);

  // The client's body, every member kept except a client-sent kv_transfer_params, plus
  // "kv_transfer_params":<decode_params> (from decode_params()). As pieces for a gather write:
  // views of the client's body, of static text and of `decode_params`, valid while they are.
  // `out` is cleared first.
  static void decode_pieces(const client_request& req, std::string_view decode_params,
                            std::vector<std::string_view>& out);
  static std::string decode_body(const client_request& req, std::string_view decode_params);

  // The prefill's kv_transfer_params from the callbacks of every prompt of the request, in prompt
  // order (layerwise_request_ids order). One callback: its posted object as it is. Several: the
  // first one's object, with "batch_kv_transfer_params":{"<request_id>":<posted object>,...} for
  // all of them in order (any such member the first one posted is dropped), which is how
  // vllm-ascend's proxy sends a completion's prompt list to the prefiller once. Empty when
  // `callbacks` is.
  static std::string prefill_params(std::span<const metaserver_callback> callbacks);

  // The client's body with kv_transfer_params = `prefill_params`, stream:false, max_tokens:1,
  // min_tokens:1, max_completion_tokens:1 only when the client sent that key, and stream_options
  // removed; everything else copied byte for byte. Pieces as in decode_pieces; they also view
  // `prefill_params`.
  static void prefill_pieces(const client_request& req, std::string_view prefill_params,
                             std::vector<std::string_view>& out);
  static std::string prefill_body(const client_request& req, std::string_view prefill_params);
};

}  // namespace glm::protocol
