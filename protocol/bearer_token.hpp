#pragma once

#include <string_view>

namespace glm::protocol {

// Checks an Authorization header against a configured bearer token (RFC 6750), without leaking
// through timing how much of a guess was right.
class bearer_token {
 public:
  // Whether `authorization` (the header's value) is "Bearer <token>" with exactly `expected` as
  // the token. The scheme is case-insensitive; spaces around the token are ignored. An empty
  // `expected` never matches: no token configured must not mean "any empty token passes".
  static bool matches(std::string_view authorization, std::string_view expected);

  // The token of a "Bearer <token>" header value, or an empty view for any other scheme.
  static std::string_view token_of(std::string_view authorization);

  // Equality in time that depends only on expected.size(): every byte of `expected` is compared,
  // whatever `given` holds, and a length mismatch is folded into the same result instead of
  // returning early. Neither the matching prefix nor the secret's length shows in the timing
  // of a rejected guess.
  static bool constant_time_equal(std::string_view given, std::string_view expected);
};

}  // namespace glm::protocol
