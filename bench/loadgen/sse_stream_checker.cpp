#include "bench/loadgen/sse_stream_checker.hpp"

#include <charconv>

namespace glm::loadgen {
namespace {

constexpr std::string_view delimiter = "\n\n";
// An SSE event larger than this is not one of ours: stop buffering it.
constexpr std::size_t max_event_bytes = 1 << 20;

// The first "text":"..." (completions) or "content":"..." (chat) string, escapes left in place
// (an escaped quote does not end it); a missing key reads as empty.
std::string_view first_text(std::string_view json) {
  for (std::string_view key :
       {std::string_view{"\"text\":\""}, std::string_view{"\"content\":\""}}) {
    const std::size_t at = json.find(key);
    if (at == std::string_view::npos) continue;
    const std::size_t start = at + key.size();
    for (std::size_t i = start; i < json.size(); ++i) {
      if (json[i] == '\\') {
        ++i;
      } else if (json[i] == '"') {
        return json.substr(start, i - start);
      }
    }
    return {};
  }
  return {};
}

// The integer after "key": at or after `from`, -1 if absent.
std::int64_t int_member(std::string_view json, std::string_view key, std::size_t from) {
  const std::size_t at = json.find(key, from);
  if (at == std::string_view::npos) return -1;
  std::size_t i = at + key.size();
  while (i < json.size() && (json[i] == ' ' || json[i] == ':')) ++i;
  std::int64_t v = -1;
  std::from_chars(json.data() + i, json.data() + json.size(), v);
  return v;
}

}  // namespace

sse_stream_checker::sse_stream_checker(std::int64_t expected_tokens, bool check_order,
                                       clock::time_point sent)
    : expected_tokens_(expected_tokens), check_order_(check_order), sent_(sent) {
  gaps_us_.reserve(static_cast<std::size_t>(expected_tokens > 0 ? expected_tokens : 0));
}

void sse_stream_checker::feed(std::string_view bytes, clock::time_point now) {
  if (!partial_.empty()) {
    // Finish the split event first: only its own tail can complete it, so search from just
    // before the seam instead of rescanning what was held.
    const std::size_t seam = partial_.size();
    partial_.append(bytes);
    const std::size_t end = partial_.find(delimiter, seam > 0 ? seam - 1 : 0);
    if (end == std::string::npos) {
      if (partial_.size() > max_event_bytes) {
        if (failure_.empty()) failure_ = "oversized_event";
        partial_.clear();
      }
      return;
    }
    const std::size_t consumed = end + delimiter.size() - seam;
    on_event(std::string_view(partial_).substr(0, end), now);
    partial_.clear();
    bytes.remove_prefix(consumed);
  }
  for (;;) {
    const std::size_t end = bytes.find(delimiter);
    if (end == std::string_view::npos) break;
    on_event(bytes.substr(0, end), now);
    bytes.remove_prefix(end + delimiter.size());
  }
  partial_.assign(bytes);
}

void sse_stream_checker::on_event(std::string_view event, clock::time_point now) {
  // Leading blank lines belong to no event (a relay may split "\n\n\n").
  while (!event.empty() && (event.front() == '\n' || event.front() == '\r')) event.remove_prefix(1);
  if (event.empty() || event.front() == ':') return;  // an SSE comment (keep-alive ping)
  constexpr std::string_view data = "data: ";
  if (!event.starts_with(data)) return;
  std::string_view payload = event.substr(data.size());
  if (!payload.empty() && payload.back() == '\r') payload.remove_suffix(1);
  if (payload == "[DONE]") {
    if (done_ && failure_.empty()) failure_ = "after_done";
    done_ = true;
    return;
  }
  if (done_) {
    if (failure_.empty()) failure_ = "after_done";
    return;
  }
  if (payload.find("\"error\"") != std::string_view::npos) {
    if (failure_.empty()) failure_ = "stream_error";
    return;
  }
  if (payload.find("\"recomputed\"") != std::string_view::npos) {
    // A proxy must hide the decoder's preemption chunk from the client.
    if (failure_.empty()) failure_ = "recomputed_leak";
    return;
  }
  const std::string_view text = first_text(payload);
  if (!text.empty()) on_token(text, now);
  if (payload.find("\"usage\"") != std::string_view::npos) on_usage(payload);
}

void sse_stream_checker::on_usage(std::string_view payload) {
  // "usage":null on token chunks (continuous usage off) carries nothing.
  std::size_t at = payload.find("\"usage\"");
  at = payload.find_first_not_of(" :", at + 7);
  if (at == std::string_view::npos || payload[at] != '{') return;
  prompt_tokens_ = int_member(payload, "\"prompt_tokens\"", at);
  cached_tokens_ = int_member(payload, "\"cached_tokens\"", at);
}

void sse_stream_checker::on_token(std::string_view text, clock::time_point now) {
  if (check_order_ && failure_.empty()) {
    constexpr std::string_view prefix = " tok";
    std::int64_t index = -1;
    if (text.starts_with(prefix)) {
      const char* first = text.data() + prefix.size();
      const char* last = text.data() + text.size();
      auto [end, ec] = std::from_chars(first, last, index);
      if (ec != std::errc{} || end != last) index = -1;
    }
    if (index != tokens_) failure_ = "order";
  }
  if (tokens_ == 0) {
    first_token_ = now;
  } else {
    gaps_us_.push_back(std::chrono::duration<float, std::micro>(now - last_token_).count());
  }
  last_token_ = now;
  ++tokens_;
  if (keep_text_) text_ += text;
}

std::string_view sse_stream_checker::verdict() const {
  if (!failure_.empty()) return failure_;
  if (!partial_.empty()) {
    // Bytes after the last blank line: only whitespace is harmless.
    if (partial_.find_first_not_of("\r\n") != std::string::npos) return "unterminated_event";
  }
  if (tokens_ != expected_tokens_) return "tokens";
  if (!done_) return "no_done";
  return {};
}

}  // namespace glm::loadgen
