#include "balancer/lifecycle.hpp"

namespace glm::balancer {

std::string_view to_string(lifecycle s) {
  switch (s) {
    case lifecycle::pending:
      return "pending";
    case lifecycle::active:
      return "active";
    case lifecycle::ejected:
      return "ejected";
    case lifecycle::probing:
      return "probing";
    case lifecycle::isolated:
      return "isolated";
  }
  return "unknown";
}

namespace transition {

std::optional<lifecycle> eject(lifecycle s) {
  if (s == lifecycle::active || s == lifecycle::probing) return lifecycle::ejected;
  return std::nullopt;
}

std::optional<lifecycle> probe_started(lifecycle s) {
  if (s == lifecycle::ejected) return lifecycle::probing;
  if (s == lifecycle::pending) return lifecycle::pending;
  return std::nullopt;
}

std::optional<lifecycle> probe_ok(lifecycle s) {
  if (s == lifecycle::pending || s == lifecycle::probing) return lifecycle::active;
  return std::nullopt;
}

std::optional<lifecycle> probe_failed(lifecycle s) {
  if (s == lifecycle::probing) return lifecycle::ejected;
  if (s == lifecycle::pending) return lifecycle::pending;
  return std::nullopt;
}

std::optional<lifecycle> isolate(lifecycle s) {
  if (is_serving_member(s)) return lifecycle::isolated;
  return std::nullopt;
}

}  // namespace transition
}  // namespace glm::balancer
