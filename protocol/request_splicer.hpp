#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/client_request.hpp"

namespace glm::protocol {

// Builds the prefill and decode bodies of a PD request from the client's bytes by splicing, never
// by re-serializing a JSON tree: members that are replaced are dropped by byte range, the rest are
// copied verbatim, and the new members are appended before the closing brace. A 1 MiB prompt costs
// one scan and one copy.
//
// Stateless and thread-safe; each call uses a thread-local simdjson parser.
class request_splicer {
 public:
  // Scans `body`. Returns nullopt on success, or a message for a 400 answer when the body is not a
  // JSON object, or has neither "prompt" nor "messages". May grow body's capacity (not its size) to
  // give simdjson its padding; views in `out` point into `body` and stay valid while it is
  // unchanged.
  static std::optional<std::string> parse(std::string& body, client_request& out);

  // Spare capacity a body should have past its size so parse() need not reallocate (and copy)
  // it to give simdjson its padding.
  static constexpr std::size_t padding = 64;

  // The client's body with kv_transfer_params = {"do_remote_decode":true,"do_remote_prefill":false,
  // "remote_engine_id":null,"remote_block_ids":null,"remote_host":null,"remote_port":null},
  // stream:false, max_tokens:1, min_tokens:1, max_completion_tokens:1 only when the client sent
  // that key, and stream_options removed. Everything else is copied byte for byte.
  static std::string prefill_body(const client_request& req);
  // prefill_body as pieces to be sent one after the other (a gather write): views of the client's
  // body and of static text, valid while the body is. `out` is cleared first.
  static void prefill_pieces(const client_request& req, std::vector<std::string_view>& out);
  // The same with kv_transfer_params = `kv_transfer_params` (raw JSON, sent verbatim): the one
  // prefill splice, which the layerwise mode's prefill (layerwise_splicer) uses too. The pieces
  // also view `kv_transfer_params`.
  static void prefill_pieces(const client_request& req, std::string_view kv_transfer_params,
                             std::vector<std::string_view>& out);

  // The client's body, every member kept except a client-sent kv_transfer_params, plus
  // "kv_transfer_params":<kv_transfer_params> copied verbatim. An empty `kv_transfer_params`
  // means the prefiller returned none: the client's body is returned unchanged.
  static std::string decode_body(const client_request& req, std::string_view kv_transfer_params);
  // decode_body as pieces, like prefill_pieces; they also view `kv_transfer_params`.
  static void decode_pieces(const client_request& req, std::string_view kv_transfer_params,
                            std::vector<std::string_view>& out);

  // The pieces joined into one string (for tests and the fuzzer; the proxy sends the pieces).
  static std::string join(const std::vector<std::string_view>& pieces);
};

}  // namespace glm::protocol
