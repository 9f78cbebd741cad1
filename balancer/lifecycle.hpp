#pragma once

#include <optional>
#include <string_view>

namespace glm::balancer {

// Where an instance is in its life, as one value with pure transitions (Boost.MySQL's
// connection_pool keeps its connection states the same way), instead of flags that could
// contradict each other.
//
//   pending  --probe_ok-->  active  --eject-->  ejected  --probe_started-->  probing
//      |                      ^                    ^                            |
//      |                      +----probe_ok--------|----------------------------+
//      |                                           +--------probe_failed--------+
//   active / ejected / probing  --isolate-->  isolated (removed with requests in flight)
//
// A pending instance (added through /instances/add) is probed until it answers; an ejected one
// waits out its ejection time, then is probed. Only `active` instances are ever chosen.
enum class lifecycle { pending, active, ejected, probing, isolated };

std::string_view to_string(lifecycle s);  // "pending", "active", ...

// Each transition returns the new state, or nullopt when it does not apply to `s` (the caller
// then leaves the instance as it is: a late probe result for an instance removed meanwhile, a
// failure report for an instance already ejected...).
namespace transition {
std::optional<lifecycle> eject(lifecycle s);          // active | probing -> ejected
std::optional<lifecycle> probe_started(lifecycle s);  // ejected -> probing; pending stays
std::optional<lifecycle> probe_ok(lifecycle s);       // pending | probing -> active
std::optional<lifecycle> probe_failed(lifecycle s);   // probing -> ejected; pending stays
std::optional<lifecycle> isolate(lifecycle s);        // active | ejected | probing -> isolated
}  // namespace transition

// In the member lists of /healthcheck and /metrics (everything but pending).
constexpr bool is_member(lifecycle s) {
  return s != lifecycle::pending;
}
// Counts toward a role's active_count() (ejected and probing ones are still members to come back).
constexpr bool is_serving_member(lifecycle s) {
  return s == lifecycle::active || s == lifecycle::ejected || s == lifecycle::probing;
}
constexpr bool is_out_of_rotation(lifecycle s) {
  return s == lifecycle::ejected || s == lifecycle::probing;
}

}  // namespace glm::balancer
