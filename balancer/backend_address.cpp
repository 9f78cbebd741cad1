#include "balancer/backend_address.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>

namespace glm::balancer {

namespace {

// Loopback and the wildcard address name the same local vLLM server in practice, so an operator
// who adds "127.0.0.1:8001" next to a configured "localhost:8001" must not get a second instance.
constexpr std::string_view local_host = "localhost";

char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// Host names compare without case (DNS does); the local aliases compare as one.
std::string canonical_host(std::string_view h) {
  std::string lowered(h.size(), '\0');
  std::transform(h.begin(), h.end(), lowered.begin(), ascii_lower);
  if (lowered == "127.0.0.1" || lowered == "0.0.0.0") return std::string(local_host);
  return lowered;
}

// The host ends up in a Host header and a resolver call: refuse anything that could split a header
// or smuggle a path, user info or a second address.
bool valid_host(std::string_view h) {
  if (h.empty()) return false;
  return std::none_of(h.begin(), h.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u == 0x7f || c == '/' || c == '@' || c == '?' || c == '#' || c == '[' ||
           c == ']' || c == '\\';
  });
}

std::optional<std::uint16_t> parse_port(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::uint32_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{} || ptr != end || value == 0 || value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

}  // namespace

std::string_view to_string(role r) {
  return r == role::prefill ? "prefill" : "decode";
}

std::string backend_address::to_string() const {
  const std::string p = std::to_string(port);
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + p;
  return host + ":" + p;
}

bool backend_address::same_as(const backend_address& other) const {
  return port == other.port && canonical_host(host) == canonical_host(other.host);
}

std::optional<backend_address> backend_address::parse(std::string_view text) {
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (rest.size() < 2 || rest.front() != ':') return std::nullopt;
    port = rest.substr(1);
    // Only an IPv6 literal needs brackets; "[name]:80" is a typo, not an address.
    if (host.find(':') == std::string_view::npos) return std::nullopt;
  } else {
    const auto colon = text.find(':');
    // A second colon means an IPv6 literal without brackets: "fe80::1:8000" has no unambiguous
    // port, so it is refused rather than guessed.
    if (colon == std::string_view::npos || text.find(':', colon + 1) != std::string_view::npos)
      return std::nullopt;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (!valid_host(host)) return std::nullopt;
  const auto p = parse_port(port);
  if (!p) return std::nullopt;
  return backend_address{std::string(host), *p};
}

}  // namespace glm::balancer
