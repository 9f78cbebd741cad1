#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "balancer/prefix_index.hpp"
#include "balancer/route_policy.hpp"

namespace glm::balancer {

// One instance that may be chosen, as the balancer sees it under its lock.
struct route_candidate {
  std::uint64_t address_hash = 0;  // rendezvous_hash::of_address(address)
  double load = 0;                 // least_loaded's score: lower is better
  std::uint64_t inflight = 0;      // requests holding it now
  std::uint64_t last_pick = 0;     // when it was last picked (a counter); 0 = never
  const prefix_index* index = nullptr;
};

struct route_decision {
  std::size_t pick = 0;  // into the candidates
  route_reason reason = route_reason::least_loaded;
  prefix_index::match match;  // the predicted match on the pick (cache_aware only)
};

// Rendezvous (highest random weight) hashing: each key ranks every instance by a hash of the pair,
// so every proxy replica that lists the same addresses ranks them alike with no shared state, and
// an instance that leaves moves only its own keys.
struct rendezvous_hash {
  // FNV-1a of the address text: stable across builds and processes, unlike std::hash.
  static std::uint64_t of_address(std::string_view text);
  static std::uint64_t weight(std::uint64_t key, std::uint64_t address_hash);
};

// The policies' decisions, as pure functions of the candidates (no lock, no clock, no state).
// `candidates` is never empty. Ties on every policy go to the smallest last_pick.
class route_selector {
 public:
  // `recompute` and `session`: the candidate the request asks to go back to, if it is among them.
  static route_decision decide(route_policy policy, const route_options& opts,
                               std::span<const route_candidate> candidates,
                               const route_request& req, std::optional<std::size_t> recompute,
                               std::optional<std::size_t> session);

  static route_decision least_loaded(std::span<const route_candidate> c);
  static route_decision round_robin(std::span<const route_candidate> c);
  static route_decision consistent_hash(std::span<const route_candidate> c, std::uint64_t key,
                                        double balance_factor);
  static route_decision cache_aware(const route_options& opts, std::span<const route_candidate> c,
                                    const route_request& req, std::optional<std::size_t> session);

  // The candidate is overloaded: its requests in flight are more than abs above `baseline` (the
  // candidates' mean) and more than rel times it.
  static bool overloaded(const route_options& opts, const route_candidate& c, double baseline);
};

}  // namespace glm::balancer
