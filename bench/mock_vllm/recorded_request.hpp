#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace glm::mock {

// One request as it arrived, for GET /mock/requests. Immutable once recorded: sessions and the
// record list share it through shared_ptr<const recorded_request>.
struct recorded_request {
  std::string method;
  std::string target;
  // Lowercased names in arrival order; a repeated header is joined with ", " (RFC 9110 5.3).
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // the exact body bytes
  // When its headers and body had been read, by the system clock, so that tests can order
  // requests seen by different processes (a decode before its prefill, in the layerwise mode).
  std::chrono::system_clock::time_point received_at;
};

}  // namespace glm::mock
