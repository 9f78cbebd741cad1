#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "protocol/client_request.hpp"

namespace glm::protocol {

// The request headers that name a session or a user, as the proxy read them (empty when absent).
struct route_headers {
  std::string_view session_id;  // X-Session-Id
  std::string_view user_id;     // X-User-Id
};

// What the balancer routes on, computed from the client's bytes before the balancer's lock is
// taken.
struct prefix_digest {
  // consistent_hash's key: X-Session-Id, else X-User-Id, else the body's top-level "user" string,
  // else the first routing_prefix_bytes of the prompt. Never 0 for a request with a prompt.
  std::uint64_t routing_key = 0;
  // Where a new conversation is placed. Stable across the turns of one conversation (everything
  // through the end of its first user message, or for a plain prompt through its first
  // content-defined boundary), different between conversations that only share a system prompt.
  std::uint64_t anchor = 0;
  std::size_t anchor_bytes = 0;  // how many prompt bytes the anchor covers
  // h_i = mix(H(block_i), h_{i-1}), h_{-1} = seed; block i ends at prefix_blocks::end(i). Only
  // whole blocks: the last partial block of a prompt is never cached whole by its next turn either.
  std::vector<std::uint64_t> blocks;
  std::size_t prompt_bytes = 0;  // bytes of the prompt / messages value that were hashed
};

// Hashes a client request for routing, without a tokenizer: the raw bytes of `messages` (or of
// `prompt`: text, a list of strings, token ids all route alike) in the blocks of prefix_blocks,
// chained, seeded by the value bytes of the members that change the rendered prefix (model,
// tools, chat_template, chat_template_kwargs, documents, cache_salt). XXH3 makes a 1 MiB prompt
// cost one pass at memory speed (bench/micro/bench_prefix_hash prints the figures).
//
// Stateless and thread-safe. Reads only `req.body` (which must outlive the call).
class prefix_hasher {
 public:
  // At most this many prompt bytes are hashed; longer prompts route on their first 8 MiB.
  static constexpr std::size_t max_hashed_bytes = std::size_t(8) << 20;
  // consistent_hash's fallback key covers this many first bytes of the prompt.
  static constexpr std::size_t routing_prefix_bytes = 1024;
  // The anchor looks this far for the end of the first user message (or a content boundary);
  // past it, the anchor covers exactly this many bytes.
  static constexpr std::size_t anchor_max_bytes = 64 * 1024;

  // Fills `out` (its vector's capacity is reused).
  static void digest(const client_request& req, const route_headers& headers, prefix_digest& out);
  static prefix_digest digest(const client_request& req, const route_headers& headers);

  // Only the consistent_hash key, for a caller that needs nothing else.
  static std::uint64_t routing_key(const client_request& req, const route_headers& headers);

  // The raw JSON bytes that are hashed: the value of `messages` when present, else of `prompt`.
  static std::string_view prompt_bytes(const client_request& req);
};

}  // namespace glm::protocol
