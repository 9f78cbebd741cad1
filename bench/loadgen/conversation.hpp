#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "bench/loadgen/loadgen_config.hpp"

namespace glm::loadgen {

// One multi-turn chat conversation of the workload: the messages so far, kept as the bytes of a
// JSON array body, and the body of each next turn. The text is pseudo-random lowercase words
// derived from (seed, group or conversation, turn), so every run sends the same bytes, groups
// share their system prompt byte for byte, and no word looks like the mock's "tok<i>" tokens.
// Not thread-safe: one worker runs a conversation's turns in order.
class conversation {
 public:
  conversation(const loadgen_config& config, std::int64_t index);

  // Appends the next user message and returns the whole request body of this turn:
  // {"model":..,"messages":[..],"max_tokens":T,"stream":true,
  //  "stream_options":{"include_usage":true}<,extra>}.
  std::string next_turn_body();

  // Appends the assistant's answer, `escaped_text` being the streamed text exactly as it came
  // inside its JSON strings (escapes left as they are, so it goes back in unchanged).
  void add_answer(std::string_view escaped_text);

  // "POST path" head for `body`, with X-Session-Id when the config asks for it.
  std::string head(const target& to, std::size_t body_size) const;

  std::int64_t index() const { return index_; }
  std::int64_t turn() const { return turn_; }

  // `bytes` of words from a generator seeded with `seed`.
  static std::string words(std::uint64_t seed, std::int64_t bytes);

 private:
  const loadgen_config& config_;
  std::int64_t index_;
  std::int64_t turn_ = 0;
  std::string messages_;  // the JSON array's members so far, without brackets
};

}  // namespace glm::loadgen
