#include "balancer/route_selector.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "protocol/prefix_blocks.hpp"

namespace glm::balancer {
namespace {

std::uint64_t fmix64(std::uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

// The lowest load among those `in`, ties to the least recently picked. `in` selects candidates.
template <class Pred>
std::optional<std::size_t> lowest(std::span<const route_candidate> c, Pred in, bool& tied) {
  std::optional<std::size_t> best;
  tied = false;
  for (std::size_t i = 0; i < c.size(); ++i) {
    if (!in(i)) continue;
    if (!best || c[i].load < c[*best].load) {
      best = i;
      tied = false;
    } else if (c[i].load == c[*best].load) {
      tied = true;
      if (c[i].last_pick < c[*best].last_pick) best = i;
    }
  }
  return best;
}

std::uint64_t min_inflight(std::span<const route_candidate> c) {
  std::uint64_t m = c[0].inflight;
  for (const auto& x : c) m = std::min(m, x.inflight);
  return m;
}

}  // namespace

std::uint64_t rendezvous_hash::of_address(std::string_view text) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char ch : text) {
    h ^= ch;
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::uint64_t rendezvous_hash::weight(std::uint64_t key, std::uint64_t address_hash) {
  return fmix64(key ^ fmix64(address_hash + 0x9e3779b97f4a7c15ULL));
}

bool route_selector::overloaded(const route_options& opts, const route_candidate& c,
                                double baseline) {
  const double load = static_cast<double>(c.inflight);
  return load - baseline > opts.cache_balance_abs_threshold &&
         load > opts.cache_balance_rel_threshold * baseline;
}

route_decision route_selector::least_loaded(std::span<const route_candidate> c) {
  bool tied = false;
  const auto best = lowest(
      c, [](std::size_t) { return true; }, tied);
  return {*best, tied ? route_reason::tie_lru : route_reason::least_loaded, {}};
}

route_decision route_selector::round_robin(std::span<const route_candidate> c) {
  std::size_t best = 0;
  for (std::size_t i = 1; i < c.size(); ++i) {
    if (c[i].last_pick < c[best].last_pick) best = i;
  }
  return {best, route_reason::round_robin, {}};
}

route_decision route_selector::consistent_hash(std::span<const route_candidate> c,
                                               std::uint64_t key, double balance_factor) {
  // Bounded loads: the mean counts this request, so the bounds add up to at least the requests
  // in flight plus one and some candidate always fits.
  std::uint64_t total = 1;
  for (const auto& x : c) total += x.inflight;
  const double mean = static_cast<double>(total) / static_cast<double>(c.size());
  const auto bound = static_cast<std::uint64_t>(std::ceil((1 + balance_factor) * mean));
  std::vector<std::pair<std::uint64_t, std::size_t>> order;
  order.reserve(c.size());
  for (std::size_t i = 0; i < c.size(); ++i) {
    order.emplace_back(rendezvous_hash::weight(key, c[i].address_hash), i);
  }
  std::sort(order.begin(), order.end(), [](auto& a, auto& b) { return a.first > b.first; });
  for (std::size_t rank = 0; rank < order.size(); ++rank) {
    const std::size_t i = order[rank].second;
    if (c[i].inflight + 1 <= bound) {
      return {i, rank == 0 ? route_reason::hash : route_reason::hash_spill, {}};
    }
  }
  return {order.front().second, route_reason::hash, {}};  // unreachable: see the bound above
}

route_decision route_selector::cache_aware(const route_options& opts,
                                           std::span<const route_candidate> c,
                                           const route_request& req,
                                           std::optional<std::size_t> session) {
  const std::uint64_t least = min_inflight(c);
  // Gated against the mean, candidate by candidate (as SGLang's gateway does since 2026): against
  // the minimum, one idle instance would make every busy one "overloaded" and break affinity at
  // ordinary concurrency.
  double mean = 0;
  for (const auto& x : c) mean += static_cast<double>(x.inflight);
  mean /= static_cast<double>(c.size());
  auto fits = [&](std::size_t i) { return !overloaded(opts, c[i], mean); };

  std::vector<prefix_index::match> matches(c.size());
  std::size_t best_blocks = 0;
  for (std::size_t i = 0; i < c.size(); ++i) {
    if (c[i].index != nullptr && !req.blocks.empty())
      matches[i] = c[i].index->longest_match(req.blocks);
    best_blocks = std::max(best_blocks, matches[i].blocks);
  }
  auto decided = [&](std::size_t i, route_reason r) { return route_decision{i, r, matches[i]}; };

  if (session && *session < c.size() && fits(*session))
    return decided(*session, route_reason::session);

  const std::size_t best_bytes =
      best_blocks == 0 ? 0 : protocol::prefix_blocks::end(best_blocks - 1);
  // A match that stops before the end of the conversation's first user message is a prefix many
  // conversations share (a system prompt): following it would herd them all onto one instance.
  const bool reaches_anchor =
      req.anchor == 0 || best_blocks >= protocol::prefix_blocks::count(req.anchor_bytes);
  const bool useful = best_blocks > 0 && reaches_anchor &&
                      static_cast<double>(best_bytes) >=
                          opts.cache_threshold * static_cast<double>(req.prompt_bytes);
  bool tied = false;
  if (useful) {
    // Among the instances that share the longest match, the least loaded.
    auto hit = lowest(
        c, [&](std::size_t i) { return matches[i].blocks == best_blocks && fits(i); }, tied);
    if (hit) return decided(*hit, route_reason::prefix_hit);
    auto spill = lowest(
        c, [&](std::size_t i) { return fits(i); }, tied);
    return decided(*spill, route_reason::load_imbalance);
  }
  if (req.anchor == 0) {
    auto pick = lowest(
        c, [](std::size_t) { return true; }, tied);
    return decided(*pick, tied ? route_reason::tie_lru : route_reason::least_loaded);
  }
  // A new prefix: the anchor's rendezvous winner among the near-least-loaded, which every replica
  // computes alike while their loads agree within abs.
  std::optional<std::size_t> pick;
  std::uint64_t best_weight = 0;
  for (std::size_t i = 0; i < c.size(); ++i) {
    if (static_cast<double>(c[i].inflight - least) > opts.cache_balance_abs_threshold) continue;
    const auto w = rendezvous_hash::weight(req.anchor, c[i].address_hash);
    if (!pick || w > best_weight) {
      pick = i;
      best_weight = w;
    }
  }
  return decided(*pick, route_reason::prefix_new);
}

route_decision route_selector::decide(route_policy policy, const route_options& opts,
                                      std::span<const route_candidate> candidates,
                                      const route_request& req,
                                      std::optional<std::size_t> recompute,
                                      std::optional<std::size_t> session) {
  auto with_match = [&](route_decision d) {
    if (policy == route_policy::cache_aware && candidates[d.pick].index != nullptr &&
        !req.blocks.empty() && d.match.blocks == 0) {
      d.match = candidates[d.pick].index->longest_match(req.blocks);
    }
    return d;
  };
  if (candidates.size() == 1) return with_match({0, route_reason::only_one, {}});
  if (recompute && *recompute < candidates.size()) {
    return with_match({*recompute, route_reason::recompute, {}});
  }
  switch (policy) {
    case route_policy::least_loaded:
      return least_loaded(candidates);
    case route_policy::round_robin:
      return round_robin(candidates);
    case route_policy::consistent_hash:
      if (req.routing_key == 0) return least_loaded(candidates);
      return consistent_hash(candidates, req.routing_key, opts.hash_balance_factor);
    case route_policy::cache_aware:
      return cache_aware(opts, candidates, req, session);
  }
  return least_loaded(candidates);
}

}  // namespace glm::balancer
