#pragma once

#include <string>
#include <string_view>

namespace glm::protocol {

// A random RFC 4122 version-4 UUID in its 36-character text form. Thread-safe: each thread seeds
// its own generator from std::random_device.
std::string make_request_id();

// Whether a client's X-Request-Id may be used as the request's id: 1 to 128 characters from
// [A-Za-z0-9._:-]. The id goes into backend headers and log lines (text and JSON), so anything
// that could break a header, a log parser or a JSON string is refused and a fresh id is used.
bool is_sane_request_id(std::string_view id);

}  // namespace glm::protocol
