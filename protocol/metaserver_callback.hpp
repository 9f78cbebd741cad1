#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace glm::protocol {

// A decoder's POST /v1/metaserver in the layerwise PD mode. The Mooncake layerwise connector sends
// it once per prompt after allocating the prompt's KV blocks:
// {"request_id":"cmpl-<id>-0","token_ids":[],"do_remote_prefill":false,"do_remote_decode":true,
//  "remote_block_ids":[[...]],"remote_block_size":[128],"remote_engine_id":...,"remote_host":...,
//  "remote_port":...,"remote_tp_size":...,"remote_pcp_size":...,"remote_dcp_size":...,
//  "remote_cached_tokens":...}
// The whole object goes to the prefiller as its kv_transfer_params, byte for byte: the proxy only
// reads request_id, to find the client request it belongs to.
//
// A plain value: owns its bytes, so it can be kept until every prompt of the request has called.
struct metaserver_callback {
  // The posted object exactly as sent, without surrounding whitespace.
  std::string params;
  // request_id decoded from its JSON escapes (may hold any Unicode: escape it before logging).
  std::string request_id;
  // request_id's string token as written, quotes included: the key under which a batched prefill
  // carries this callback (a splice, so an escaped id stays exactly as the decoder wrote it).
  std::string request_id_json;
  // One top-level member of `params`: [begin, end) covers `"key": value` exactly.
  struct member_span {
    std::size_t begin = 0;
    std::size_t end = 0;
    // The key is "batch_kv_transfer_params", the one a batched prefill sets itself.
    bool batch_key = false;
  };
  // The object's top-level members in order, duplicates kept. Offsets, not views, so a copy or a
  // move of this value stays valid.
  std::vector<member_span> members;

  // Scans a callback body. Returns nullopt on success, or a message for a 400 answer when the
  // body is not one JSON object, or has no "request_id" whose value is a string (a duplicate key
  // counts by its last occurrence, as in Python's json). May grow body's capacity (not its size)
  // for simdjson's padding. `out` is reset first, and left empty on failure.
  static std::optional<std::string> parse(std::string& body, metaserver_callback& out);
};

}  // namespace glm::protocol
