#pragma once

#include <cstring>
#include <string>
#include <string_view>

namespace glm::protocol {

// Splits a server-sent-event byte stream into events, however the bytes arrive: several events in
// one read, one event over many reads, "\n" or "\r\n" line ends, comment lines. An event is
// everything up to and including the blank line that ends it.
//
// Complete events inside one piece are handed out as views into that piece (no copy); only the
// unfinished tail is kept until the next piece completes it. Not thread-safe; one per stream.
class sse_framer {
 public:
  explicit sse_framer(std::size_t max_event_bytes = std::size_t(1) << 20)
      : max_event_bytes_(max_event_bytes) {}

  // Calls on_event(std::string_view event) for each event completed by `piece`, in order. An
  // event that started in an earlier piece is passed from the framer's own buffer. Returns false,
  // and stops, if an unfinished event grows past max_event_bytes.
  template <class OnEvent>
  bool feed(std::string_view piece, OnEvent&& on_event) {
    std::size_t start = 0;  // first byte of the current event inside `piece`
    std::size_t pos = 0;
    while (pos < piece.size()) {
      const void* hit = std::memchr(piece.data() + pos, '\n', piece.size() - pos);
      if (hit == nullptr) {
        line_ = extend(line_, piece.substr(pos));
        break;
      }
      std::size_t nl = static_cast<const char*>(hit) - piece.data();
      bool blank = extend(line_, piece.substr(pos, nl - pos)) != line::text;
      line_ = line::empty;
      pos = nl + 1;
      if (!blank) {
        seen_line_ = true;
        continue;
      }
      if (!seen_line_) continue;  // stray blank lines belong to the next event
      seen_line_ = false;
      if (pending_.empty()) {
        on_event(piece.substr(start, pos - start));
      } else {
        pending_.append(piece.data() + start, pos - start);
        on_event(std::string_view(pending_));
        pending_.clear();
        // A rare huge event must not pin its buffer for the rest of a long stream.
        if (pending_.capacity() > retained_capacity) std::string().swap(pending_);
      }
      start = pos;
    }
    if (start < piece.size()) {
      if (pending_.size() + (piece.size() - start) > max_event_bytes_) return false;
      pending_.append(piece.data() + start, piece.size() - start);
    }
    return true;
  }

  // Bytes of an event not finished yet.
  std::string_view pending() const { return pending_; }

 private:
  // What the current line holds so far, before its "\n". A line counts as blank when it is empty
  // or only "\r" (the "\r" of "\r\n").
  enum class line : unsigned char { empty, cr, text };

  // The state of a line after `more` bytes of it. It may have begun in an earlier piece, so "\r"
  // then "\r" is text, as "\r\r" in one piece is.
  static line extend(line state, std::string_view more) {
    if (more.empty()) return state;
    if (state == line::empty && more.size() == 1 && more[0] == '\r') return line::cr;
    return line::text;
  }

  static constexpr std::size_t retained_capacity = std::size_t(64) << 10;

  std::size_t max_event_bytes_;
  std::string pending_;
  line line_ = line::empty;  // the current line, as far as earlier pieces went
  bool seen_line_ = false;   // the current event has at least one non-blank line
};

}  // namespace glm::protocol
