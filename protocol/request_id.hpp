#pragma once

#include <string>

namespace glm::protocol {

// A random RFC 4122 version-4 UUID in its 36-character text form. Thread-safe: each thread seeds
// its own generator from std::random_device.
std::string make_request_id();

}  // namespace glm::protocol
