#include "balancer/route_policy.hpp"

#include <cmath>

namespace glm::balancer {

std::string_view to_string(route_policy p) {
  switch (p) {
    case route_policy::least_loaded:
      return "least_loaded";
    case route_policy::round_robin:
      return "round_robin";
    case route_policy::consistent_hash:
      return "consistent_hash";
    case route_policy::cache_aware:
      return "cache_aware";
  }
  return "unknown";
}

std::optional<route_policy> parse_route_policy(std::string_view name) {
  for (std::size_t i = 0; i < route_policy_count; ++i) {
    const auto p = static_cast<route_policy>(i);
    if (to_string(p) == name) return p;
  }
  return std::nullopt;
}

std::string_view to_string(route_reason r) {
  switch (r) {
    case route_reason::only_one:
      return "only_one";
    case route_reason::least_loaded:
      return "least_loaded";
    case route_reason::tie_lru:
      return "tie_lru";
    case route_reason::round_robin:
      return "round_robin";
    case route_reason::hash:
      return "hash";
    case route_reason::hash_spill:
      return "hash_spill";
    case route_reason::prefix_hit:
      return "prefix_hit";
    case route_reason::prefix_new:
      return "prefix_new";
    case route_reason::load_imbalance:
      return "load_imbalance";
    case route_reason::session:
      return "session";
    case route_reason::recompute:
      return "recompute";
  }
  return "unknown";
}

namespace {

std::string out_of_range(std::string_view flag, double value, std::string_view range) {
  return std::string(flag) + ": " + std::to_string(value) + " is out of range " +
         std::string(range);
}

}  // namespace

std::optional<std::string> validate(const route_options& o) {
  // !(x >= lo) rather than x < lo: a NaN is out of range too.
  if (!(o.cache_threshold >= 0 && o.cache_threshold <= 1)) {
    return out_of_range("--cache-threshold", o.cache_threshold, "[0, 1]");
  }
  if (!(o.cache_balance_abs_threshold >= 0) || std::isinf(o.cache_balance_abs_threshold)) {
    return out_of_range("--cache-balance-abs-threshold", o.cache_balance_abs_threshold, "[0, inf)");
  }
  if (!(o.cache_balance_rel_threshold >= 1) || std::isinf(o.cache_balance_rel_threshold)) {
    return out_of_range("--cache-balance-rel-threshold", o.cache_balance_rel_threshold, "[1, inf)");
  }
  if (o.cache_max_entries < 1) {
    return out_of_range("--cache-max-entries", 0, "[1, inf)");
  }
  if (!(o.hash_balance_factor >= 0) || std::isinf(o.hash_balance_factor)) {
    return out_of_range("--hash-balance-factor", o.hash_balance_factor, "[0, inf)");
  }
  return std::nullopt;
}

}  // namespace glm::balancer
