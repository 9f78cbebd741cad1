#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace glm::loadgen {

// Checks one SSE answer as its body bytes arrive and times its token events. Events are framed
// by the blank line ("\n\n"), whether a read holds several or one is split across reads, so the
// figures do not depend on how the relay under test chunks its writes.
//
// A token event is a "data: {...}" event whose first "text" or "content" string is not empty;
// its arrival time is that of the read that completed it. Not thread-safe; one per request.
class sse_stream_checker {
 public:
  using clock = std::chrono::steady_clock;

  // `expected_tokens`: T. `check_order`: token k must read " tok<k>" (the mock's numbering).
  sse_stream_checker(std::int64_t expected_tokens, bool check_order, clock::time_point sent);

  // Body bytes in arrival order, all stamped with `now`.
  void feed(std::string_view bytes, clock::time_point now);

  // After the body ended: empty if the answer was right, else why not ("tokens", "no_done",
  // "after_done", "stream_error", "order", "recomputed_leak").
  std::string_view verdict() const;

  // Keep the text of the token events, for text(); off by default (the closed loop needs none).
  void keep_text() { keep_text_ = true; }
  // The generated text as it came, JSON escapes left in place.
  const std::string& text() const { return text_; }
  // From the usage chunk (stream_options.include_usage); -1 if none came or it lacked the field.
  std::int64_t prompt_tokens() const { return prompt_tokens_; }
  std::int64_t cached_tokens() const { return cached_tokens_; }

  std::int64_t tokens() const { return tokens_; }
  // Send-to-first-token; meaningful only if tokens() > 0.
  clock::duration ttft() const { return first_token_ - sent_; }
  // Gaps between consecutive token events, in microseconds.
  const std::vector<float>& gaps_us() const { return gaps_us_; }

 private:
  void on_event(std::string_view event, clock::time_point now);
  void on_token(std::string_view text, clock::time_point now);
  void on_usage(std::string_view payload);

  std::int64_t expected_tokens_;
  bool check_order_;
  clock::time_point sent_;
  clock::time_point first_token_{};
  clock::time_point last_token_{};
  std::int64_t tokens_ = 0;
  bool done_ = false;
  std::string_view failure_;  // first failure seen; a literal
  std::string partial_;       // an event split across reads, until its blank line arrives
  bool keep_text_ = false;
  std::string text_;
  std::int64_t prompt_tokens_ = -1;
  std::int64_t cached_tokens_ = -1;
  std::vector<float> gaps_us_;
};

}  // namespace glm::loadgen
