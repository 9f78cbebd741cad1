#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace glm::protocol {

// The body of POST /instances/add and /instances/remove:
// {"type":"prefill"|"decode","instances":["host:port",...]} (a single string is allowed too).
struct instances_request {
  std::string type;  // as sent; the caller checks it names a role
  std::vector<std::string> instances;

  // Returns nullopt on success, or a message for a 400 answer: not a JSON object, "type" missing or
  // not a string, "instances" missing, empty, or not a string or a list of strings.
  static std::optional<std::string> parse(std::string_view body, instances_request& out);
};

}  // namespace glm::protocol
