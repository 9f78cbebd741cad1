#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace glm::balancer {

enum class role { prefill, decode };

std::string_view to_string(role r);  // "prefill" / "decode"

// Where a vLLM API server listens. `host` is a name or an IP literal without brackets ("::1").
struct backend_address {
  std::string host;
  std::uint16_t port = 0;

  // "host:port", or "[addr]:port" for an IPv6 literal: the form used in logs, JSON and metrics.
  std::string to_string() const;

  // The same instance for /instances/add and /instances/remove: same port, and the same host where
  // "localhost", "127.0.0.1" and "0.0.0.0" count as one host.
  bool same_as(const backend_address& other) const;

  bool operator==(const backend_address&) const = default;

  // Parses "host:port", "[v6]:port" or "v6addr" forms used by /instances/add. Returns nullopt when
  // the port is missing, not a number, or outside 1..65535.
  static std::optional<backend_address> parse(std::string_view text);
};

}  // namespace glm::balancer
