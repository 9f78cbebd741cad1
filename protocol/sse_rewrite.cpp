#include "protocol/sse_rewrite.hpp"

#include "protocol/response_rewriter.hpp"
#include "protocol/substring_finder.hpp"

namespace glm::protocol {
namespace {

constexpr substring_finder recomputed_word("recomputed");
constexpr substring_finder usage_key("\"usage\"");

}  // namespace

sse_rewrite::sse_rewrite(options opts, generation_progress& progress)
    : opts_(opts), progress_(progress), framer_(opts.max_event_bytes) {}

const std::vector<std::string_view>& sse_rewrite::feed(std::string_view piece) {
  segments_.clear();
  owned_.clear();
  out_.clear();
  events_ = 0;
  consumed_ = 0;
  const std::size_t held_before = framer_.pending().size();
  bool framed =
      framer_.feed(piece, [&](std::string_view event) { on_event(event, piece, held_before); });
  if (!framed && !recomputed_) {
    // An event past max_event_bytes: pass what is held and the rest of this read through
    // unframed, and frame afresh from the next read, rather than buffer more.
    emit_owned(framer_.pending());
    emit(piece.substr(consumed_), piece);
    framer_ = sse_framer(opts_.max_event_bytes);
  }
  for (const segment& s : segments_) {
    const char* base = s.owned ? owned_.data() : piece.data();
    out_.emplace_back(base + s.offset, s.size);
  }
  return out_;
}

void sse_rewrite::on_event(std::string_view event, std::string_view piece,
                           std::size_t held_before) {
  bool in_piece = event.data() >= piece.data() && event.data() + event.size() <= piece.end();
  // An event that began in an earlier read comes from the framer's buffer; its part in this read
  // is what the buffer did not hold yet.
  consumed_ = in_piece ? static_cast<std::size_t>(event.data() + event.size() - piece.data())
                       : event.size() - held_before;
  if (recomputed_) return;  // only the preempted stream's [DONE] follows
  ++events_;
  std::string_view data = response_rewriter::event_data(event);
  if (!data.empty() && data.front() == '{') {
    ++progress_.chunks;
    if (recomputed_word.in(event) && response_rewriter::is_recomputed(data)) {
      recomputed_ = true;  // hidden from the client: the stream goes on after a re-prefill
      --events_;
      return;
    }
    response_rewriter::append_choice_text(data, progress_.text);
    if (opts_.include_usage && usage_key.in(event)) {
      if (auto rewritten =
              response_rewriter::event_with_cached_tokens(event, opts_.cached_tokens)) {
        emit_owned(*rewritten);
        return;
      }
    }
  }
  emit(event, piece);
}

void sse_rewrite::emit(std::string_view bytes, std::string_view piece) {
  if (bytes.empty()) return;
  bool in_piece = bytes.data() >= piece.data() && bytes.data() + bytes.size() <= piece.end();
  if (!in_piece) {
    // From the framer's own buffer (an event that spanned reads): copy, it is reused.
    emit_owned(bytes);
    return;
  }
  std::size_t offset = static_cast<std::size_t>(bytes.data() - piece.data());
  if (!segments_.empty() && !segments_.back().owned &&
      segments_.back().offset + segments_.back().size == offset) {
    segments_.back().size += bytes.size();  // consecutive untouched events: one range
  } else {
    segments_.push_back({false, offset, bytes.size()});
  }
}

void sse_rewrite::emit_owned(std::string_view bytes) {
  if (bytes.empty()) return;
  segments_.push_back({true, owned_.size(), bytes.size()});
  owned_.append(bytes);
}

}  // namespace glm::protocol
