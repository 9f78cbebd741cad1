#include "protocol/recompute_splicer.hpp"

#include <algorithm>
#include <string>

#include "protocol/json_scan.hpp"

namespace glm::protocol {

namespace {

using detail::is_json_ws;
using detail::key_is;

// A small cursor over JSON text that request_splicer::parse has already validated completely, so
// it only has to find boundaries: it never checks grammar. Whatever the text, every step moves
// forward and the position never passes the end, so a scan always ends.
class valid_json_cursor {
 public:
  explicit valid_json_cursor(std::string_view text) : s_(text) {}

  std::size_t pos() const { return p_; }
  bool at_end() const { return p_ >= s_.size(); }
  char peek() const { return p_ < s_.size() ? s_[p_] : '\0'; }
  void advance() {
    if (p_ < s_.size()) ++p_;
  }

  void skip_ws() {
    while (p_ < s_.size() && is_json_ws(s_[p_])) ++p_;
  }

  // At an opening quote: moves past the closing quote.
  void skip_string() {
    ++p_;
    while (p_ < s_.size() && s_[p_] != '"') p_ += s_[p_] == '\\' ? 2 : 1;
    p_ = std::min(p_ + 1, s_.size());
  }

  // Moves past the value that starts here (no leading whitespace).
  void skip_value() {
    char c = peek();
    if (c == '"') {
      skip_string();
    } else if (c == '{' || c == '[') {
      std::size_t depth = 0;
      while (p_ < s_.size()) {
        c = s_[p_];
        if (c == '"') {
          skip_string();
          continue;
        }
        ++p_;
        if (c == '{' || c == '[') {
          ++depth;
        } else if ((c == '}' || c == ']') && --depth == 0) {
          return;
        }
      }
    } else if (p_ < s_.size()) {
      do {
        ++p_;
      } while (p_ < s_.size() && s_[p_] != ',' && s_[p_] != '}' && s_[p_] != ']' &&
               !is_json_ws(s_[p_]));
    }
  }

 private:
  std::string_view s_;
  std::size_t p_ = 0;
};

// In the raw text of a valid "messages" array: the offset of the closing quote of the last user
// message's "content" string. nullopt when there is no user message, or the last one's content is
// not a string (absent, null, a list of parts). Keys and the role may be written with escapes
// ("us\u0065r"); a duplicate key counts by its last occurrence, as in vLLM's JSON parser.
std::optional<std::size_t> last_user_content_end(std::string_view array) {
  valid_json_cursor c(array);
  c.skip_ws();
  if (c.peek() != '[') return std::nullopt;
  c.advance();
  bool found_user = false;
  std::optional<std::size_t> content_end;  // of the last user message so far
  for (;;) {
    c.skip_ws();
    if (c.at_end() || c.peek() == ']') break;
    if (c.peek() != '{') {
      c.skip_value();
    } else {
      c.advance();
      bool is_user = false;
      std::optional<std::size_t> content;  // closing quote when the (last) content is a string
      for (;;) {
        c.skip_ws();
        if (c.at_end() || c.peek() == '}') break;
        const std::size_t key_begin = c.pos() + 1;
        c.skip_string();
        const std::string_view key = array.substr(key_begin, c.pos() - 1 - key_begin);
        c.skip_ws();
        c.advance();  // ':'
        c.skip_ws();
        const std::size_t value_begin = c.pos();
        c.skip_value();
        const std::string_view value = array.substr(value_begin, c.pos() - value_begin);
        if (key_is(key, "role")) {
          is_user = value.size() >= 2 && value.front() == '"' &&
                    key_is(value.substr(1, value.size() - 2), "user");
        } else if (key_is(key, "content")) {
          content = value.size() >= 2 && value.front() == '"'
                        ? std::optional<std::size_t>(c.pos() - 1)
                        : std::nullopt;
        }
        c.skip_ws();
        if (c.peek() == ',') c.advance();
      }
      c.advance();  // '}'
      if (is_user) {
        found_user = true;
        content_end = content;
      }
    }
    c.skip_ws();
    if (c.peek() == ',') c.advance();
  }
  if (!found_user) return std::nullopt;
  return content_end;
}

bool dropped(std::string_view key, bool chat) {
  return key_is(key, chat ? "messages" : "prompt") || key_is(key, "max_tokens") ||
         key_is(key, "max_completion_tokens");
}

}  // namespace

std::optional<std::string> recompute_splicer::body(const client_request& req,
                                                   std::string_view generated,
                                                   std::int64_t max_tokens) {
  // A body with a "prompt" is a completion request (a chat body has none); otherwise the text is
  // appended to its "messages".
  const bool chat = req.find("prompt") == nullptr;
  const member_range* target = req.find(chat ? "messages" : "prompt");
  if (target == nullptr) return std::nullopt;
  const std::string_view value =
      req.body.substr(target->value_begin, target->end - target->value_begin);

  // `value` is split at `cut`: value[0, cut) + generated + value[cut, end).
  std::size_t cut = 0;
  if (chat) {
    auto end = last_user_content_end(value);
    if (!end) return std::nullopt;
    cut = *end;
  } else {
    if (value.size() < 2 || value.front() != '"') return std::nullopt;  // token ids, a list
    cut = value.size() - 1;
  }

  const std::string_view key = chat ? R"("messages":)" : R"("prompt":)";
  const std::string number = std::to_string(max_tokens);
  constexpr std::string_view max_key = R"(,"max_tokens":)";
  constexpr std::string_view max_completion_key = R"(,"max_completion_tokens":)";

  std::size_t size =
      2 + key.size() + value.size() + generated.size() + max_key.size() + number.size();
  if (req.has_max_completion_tokens) size += max_completion_key.size() + number.size();
  for (const member_range& m : req.members) {
    if (!dropped(m.key, chat)) size += m.end - m.begin + 1;
  }

  std::string out;
  out.reserve(size);
  out += '{';
  for (const member_range& m : req.members) {
    if (dropped(m.key, chat)) continue;
    out.append(req.body, m.begin, m.end - m.begin);
    out += ',';
  }
  out += key;
  out.append(value, 0, cut);
  out += generated;
  out.append(value, cut);
  out += max_key;
  out += number;
  if (req.has_max_completion_tokens) {
    out += max_completion_key;
    out += number;
  }
  out += '}';
  return out;
}

}  // namespace glm::protocol
