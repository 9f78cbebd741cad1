#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/sse_framer.hpp"

namespace glm::protocol {

// What the decoders have generated for one request so far, across recompute rounds: what a
// re-prefill needs to continue where the preempted decoder stopped.
struct generation_progress {
  std::string text;         // choice 0's generated text, still JSON-escaped as it was sent
  std::int64_t chunks = 0;  // data events with a JSON payload seen (the recomputed one counted)
};

// The proxy's changes to one decoder's SSE stream, as a pure transform of bytes: no I/O, so it is
// unit-tested and fuzzed without sockets, and the relay takes it as a parameter.
//
// Bytes pass through untouched except for two kinds of event, found by a substring test before
// any parse: a usage chunk (with include_usage), whose cached_tokens becomes the prefiller's
// figure; and a choice with "stop_reason":"recomputed", which is hidden together with everything
// after it (only its [DONE] follows), so that the stream can continue after a re-prefill.
// Events are framed however the bytes arrive; an event larger than max_event_bytes is passed on
// unframed rather than buffered further. Every input byte that is not hidden or rewritten comes
// out exactly once, in order.
//
// Not thread-safe; one per decode round of one stream. `progress` must outlive it.
class sse_rewrite {
 public:
  struct options {
    bool include_usage = false;      // the client asked for the usage chunk
    std::int64_t cached_tokens = 0;  // the prefiller's usage.prompt_tokens_details.cached_tokens
    std::size_t max_event_bytes = std::size_t(4) << 20;
  };

  sse_rewrite(options opts, generation_progress& progress);

  // The bytes to send for one read of the stream, in order: views into `piece` (no copy for the
  // common event) and into this object's own storage. Valid until the next call.
  const std::vector<std::string_view>& feed(std::string_view piece);

  // Events completed by the last feed() and passed on (hidden ones not counted).
  std::size_t events() const { return events_; }
  // The decoder preempted the request: nothing more of this stream is passed on.
  bool recomputed() const { return recomputed_; }
  // The bytes of an unfinished event, for a stream that ends without a final blank line.
  std::string_view pending() const { return framer_.pending(); }

 private:
  // One output range: of the piece being fed, or of owned_.
  struct segment {
    bool owned;
    std::size_t offset;
    std::size_t size;
  };
  void on_event(std::string_view event, std::string_view piece, std::size_t held_before);
  void emit(std::string_view bytes, std::string_view piece);
  void emit_owned(std::string_view bytes);

  options opts_;
  generation_progress& progress_;
  sse_framer framer_;
  std::vector<segment> segments_;  // reused for every read: no allocation once warm
  std::string owned_;
  std::vector<std::string_view> out_;
  std::size_t consumed_ = 0;  // bytes of the piece that belong to events completed so far
  std::size_t events_ = 0;
  bool recomputed_ = false;
};

}  // namespace glm::protocol
