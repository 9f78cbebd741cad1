#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "balancer/backend_address.hpp"
#include "protocol/prefix_hasher.hpp"

namespace glm::balancer {

// How one role's instance is chosen (--prefill-policy, --decode-policy). Every policy breaks ties
// toward the instance picked least recently, and every policy sends a recompute re-prefill back to
// the prefiller it came from while that one can be chosen.
enum class route_policy {
  least_loaded,  // the reference's scoring: lowest active load, ties to the least recently picked
  round_robin,   // the least recently picked instance
  consistent_hash,  // rendezvous order of the routing key, with bounded loads
  cache_aware,      // longest predicted prefix-cache match, load-gated; new prefixes by anchor
};
inline constexpr std::size_t route_policy_count = 4;

std::string_view to_string(route_policy p);
// "least_loaded", "round_robin", "consistent_hash", "cache_aware"; nullopt for anything else.
std::optional<route_policy> parse_route_policy(std::string_view name);

// Why an instance was chosen: the label of glm_proxy_route_decisions_total and a word on the
// access line.
enum class route_reason {
  only_one,      // one instance could be chosen
  least_loaded,  // the lowest load, alone
  tie_lru,       // the lowest load was shared; the least recently picked of them won
  round_robin,   // round_robin's turn
  hash,          // consistent_hash: the key's first instance
  hash_spill,    // consistent_hash: the key's first instance was over its bound or ineligible
  prefix_hit,    // cache_aware: the longest predicted match, over the threshold and not overloaded
  prefix_new,    // cache_aware: no useful match; placed by the anchor's rendezvous hash
  load_imbalance,  // cache_aware: the best match was overloaded; the least loaded took it
  session,         // cache_aware: X-Session-Id's prefiller
  recompute,       // a recompute re-prefill went back to its prefiller
};
inline constexpr std::size_t route_reason_count = 11;

std::string_view to_string(route_reason r);

// The routing flags. Defaults follow vllm-ascend's proxy flags where they overlap.
struct route_options {
  route_policy prefill_policy = route_policy::least_loaded;  // --prefill-policy
  route_policy decode_policy = route_policy::least_loaded;   // --decode-policy
  // --cache-threshold [0, 1]: a predicted match counts when it covers at least this share of
  // the prompt's bytes.
  double cache_threshold = 0.3;
  // --cache-balance-abs-threshold (>= 0) and --cache-balance-rel-threshold (>= 1): a candidate is
  // overloaded, and cache affinity and session pins yield to the least loaded, when its requests
  // in flight exceed the candidates' mean by more than abs AND are more than rel times it (a
  // per-candidate gate). New prefixes are placed among the candidates within abs of the least
  // loaded.
  double cache_balance_abs_threshold = 2;
  double cache_balance_rel_threshold = 1.5;
  // --cache-max-entries (>= 1): prefix blocks remembered per instance (LRU); also the number of
  // sessions remembered per role.
  std::size_t cache_max_entries = 100'000;
  // --hash-balance-factor (>= 0): consistent_hash's bounded loads; an instance takes a key only
  // while its in-flight requests are below ceil((1 + factor) * mean), the mean counting the new
  // request.
  double hash_balance_factor = 0.25;
};

// nullopt when `o` is usable, else a message naming the flag, e.g. "--cache-threshold: 1.5 is out
// of range [0, 1]", for the CLI's usage error.
std::optional<std::string> validate(const route_options& o);

// What a choice is made on. Every field is optional: the default-constructed request routes by
// load alone (the pre-policy behaviour). The views need only outlive the call.
struct route_request {
  std::string_view session_key;           // X-Session-Id, for the soft session pin
  std::uint64_t routing_key = 0;          // consistent_hash's key; 0 = none
  std::uint64_t anchor = 0;               // where a new prefix is placed; 0 = none
  std::size_t anchor_bytes = 0;           // how many prompt bytes the anchor covers
  std::span<const std::uint64_t> blocks;  // chained prefix block hashes (protocol/prefix_hasher)
  std::size_t prompt_bytes = 0;           // bytes the blocks were cut from
  bool recompute = false;  // a re-prefill after the decoder asked for one: back to its prefiller
};

// A route_request over a digest (which must outlive it).
inline route_request to_route_request(const protocol::prefix_digest& d,
                                      std::string_view session_key = {}, bool recompute = false) {
  return {session_key, d.routing_key,  d.anchor, d.anchor_bytes,
          d.blocks,    d.prompt_bytes, recompute};
}

struct route_choice {
  backend_address address;
  route_reason reason = route_reason::least_loaded;
  std::size_t predicted_bytes = 0;   // predicted prefix-cache match on it, in prompt bytes
  std::size_t predicted_tokens = 0;  // the same, converted with the learned bytes per token
};

}  // namespace glm::balancer
