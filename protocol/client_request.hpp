#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace glm::protocol {

// One top-level member of the client's JSON object, as byte offsets into the body.
// [begin, end) covers `"key": value` exactly (the opening quote of the key through the last byte of
// the value), so members can be copied verbatim without re-serializing anything.
struct member_range {
  std::string_view key;  // the key as written between its quotes (still escaped)
  std::size_t begin = 0;
  std::size_t end = 0;
  std::size_t value_begin = 0;  // first byte of the value
};

// What the proxy needs to know about a client's completion request, found in one scan of the body.
// Every view points into the body given to request_splicer::parse(); that body must outlive this.
struct client_request {
  std::string_view body;
  std::vector<member_range> members;  // in body order; duplicate keys appear more than once
  bool stream = false;                // "stream": true
  bool include_usage = false;         // "stream_options": {"include_usage": true}
  bool has_max_completion_tokens = false;
  std::optional<std::int64_t> max_tokens;  // "max_tokens" when it is an integer
  bool has_prompt = false;
  bool has_messages = false;

  // The last member named `key`, if any (JSON parsers keep the last duplicate).
  const member_range* find(std::string_view key) const;
};

}  // namespace glm::protocol
