#include "protocol/choice_text_scanner.hpp"

#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>

#include "protocol/json_scan.hpp"

namespace glm::protocol {
namespace {

using sv = std::string_view;

// The raw text between the quotes of the string token `token`, or nullopt if it is not a string.
std::optional<sv> string_body(sv token) {
  if (token.size() < 2 || token.front() != '"') return std::nullopt;
  return token.substr(1, token.size() - 2);
}

// A mask of the bytes among the 8 at `p` that need a look inside a string: a quote, a backslash,
// a control byte or a byte outside ASCII (the high bit of each such byte is set). Borrows in the
// subtractions only run towards later bytes, so the lowest set bit always marks a true one: the
// first byte that needs a look is at countr_zero(mask) / 8.
std::uint64_t special_bytes(const char* p) {
  std::uint64_t w;
  std::memcpy(&w, p, sizeof w);
  if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap64(w);
  constexpr std::uint64_t ones = 0x0101010101010101ULL;
  constexpr std::uint64_t highs = 0x8080808080808080ULL;
  auto zero_byte = [](std::uint64_t v) { return (v - ones) & ~v & highs; };
  const std::uint64_t quote = zero_byte(w ^ (ones * '"'));
  const std::uint64_t backslash = zero_byte(w ^ (ones * '\\'));
  const std::uint64_t control = (w - ones * 0x20) & ~w & highs;
  return quote | backslash | control | (w & highs);
}

bool plain_byte(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x20 && u < 0x80 && c != '"' && c != '\\';
}

// A reading position in the document. Every method returns false when what follows is outside
// the subset (which includes everything malformed): the scan then gives up, as `unsure`.
class cursor {
 public:
  explicit cursor(sv text) : p_(text.data()), end_(text.data() + text.size()) {}

  const char* pos() const { return p_; }
  bool at(char c) const { return p_ < end_ && *p_ == c; }
  bool at_end() const { return p_ == end_; }

  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }

  // A string token; `body` is its raw text between the quotes.
  bool string(sv& body) {
    const char* begin = ++p_;  // past the opening quote (the caller saw it)
    for (;;) {
      // To the next byte that needs a look, eight bytes at a time.
      for (;;) {
        if (end_ - p_ < 8) {
          while (p_ < end_ && plain_byte(*p_)) ++p_;
          if (p_ == end_) return false;  // unterminated
          break;
        }
        if (const std::uint64_t special = special_bytes(p_)) {
          p_ += std::countr_zero(special) / 8;
          break;
        }
        p_ += 8;
      }
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        body = sv(begin, std::size_t(p_ - begin));
        ++p_;
        return true;
      }
      if (c == '\\') {
        if (!escape()) return false;
      } else if (c < 0x20) {
        return false;                 // a raw control character is not JSON
      } else if (!utf8_sequence()) {  // c >= 0x80
        return false;
      }
    }
  }

  // Any value, validated, leaving the position just past it (trailing whitespace not taken).
  bool skip_value(int depth) {
    if (p_ == end_) return false;
    switch (*p_) {
      case '{':
        return object(depth + 1, [&](sv) { return skip_value(depth + 1); });
      case '[':
        return array(depth + 1, [&](int) { return skip_value(depth + 1); });
      case '"': {
        sv ignored;
        return string(ignored);
      }
      case 't':
        return literal("true");
      case 'f':
        return literal("false");
      case 'n':
        return literal("null");
      default:
        return number();
    }
  }

  // An object at `depth`: on_member(key) is called with the position on the member's value, and
  // must take the value whole. Keys with escapes are left to the general scan.
  template <class OnMember>
  bool object(int depth, OnMember&& on_member) {
    return container('{', '}', depth, [&](int) {
      sv key;
      if (!at('"') || !string(key) || key.find('\\') != sv::npos) return false;
      ws();
      if (!at(':')) return false;
      ++p_;
      ws();
      return on_member(key);
    });
  }

  // An array at `depth`: on_element(i) is called with the position on element i.
  template <class OnElement>
  bool array(int depth, OnElement&& on_element) {
    return container('[', ']', depth, on_element);
  }

 private:
  // A bracketed, comma-separated list at `depth`; item(i) reads item i from its first byte.
  template <class OnItem>
  bool container(char open, char close, int depth, OnItem&& item) {
    if (depth > choice_text_scanner::max_depth || !at(open)) return false;
    ++p_;
    ws();
    if (at(close)) {
      ++p_;
      return true;
    }
    for (int i = 0;; ++i) {
      if (!item(i)) return false;
      ws();
      if (at(close)) {
        ++p_;
        return true;
      }
      if (!at(',')) return false;
      ++p_;
      ws();
    }
  }

  bool escape() {
    // p_ is on the backslash; the same escapes as detail::valid_string_token.
    if (end_ - p_ < 2) return false;
    switch (p_[1]) {
      case '"':
      case '\\':
      case '/':
      case 'b':
      case 'f':
      case 'n':
      case 'r':
      case 't':
        p_ += 2;
        return true;
      case 'u':
        if (end_ - p_ < 6) return false;
        for (int i = 2; i < 6; ++i) {
          const char h = p_[i];
          if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F'))) {
            return false;
          }
        }
        p_ += 6;
        return true;
      default:
        return false;
    }
  }

  // One well-formed UTF-8 sequence of two to four bytes (no overlong forms, no surrogates,
  // nothing past U+10FFFF), as simdjson validates a whole document.
  bool utf8_sequence() {
    const auto* p = reinterpret_cast<const unsigned char*>(p_);
    const unsigned lead = p[0];
    unsigned lo = 0x80, hi = 0xBF;
    std::ptrdiff_t more = 0;
    if (lead >= 0xC2 && lead <= 0xDF) {
      more = 1;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      more = 2;
      if (lead == 0xE0) lo = 0xA0;
      if (lead == 0xED) hi = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      more = 3;
      if (lead == 0xF0) lo = 0x90;
      if (lead == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (end_ - p_ <= more) return false;
    if (p[1] < lo || p[1] > hi) return false;
    for (std::ptrdiff_t i = 2; i <= more; ++i) {
      if (p[i] < 0x80 || p[i] > 0xBF) return false;
    }
    p_ += more + 1;
    return true;
  }

  bool literal(sv word) {
    if (sv(p_, std::size_t(end_ - p_)).substr(0, word.size()) != word) return false;
    p_ += word.size();
    return true;
  }

  bool number() {
    const char* begin = p_;
    while (p_ < end_ && ((*p_ >= '0' && *p_ <= '9') || *p_ == '-' || *p_ == '+' || *p_ == '.' ||
                         *p_ == 'e' || *p_ == 'E')) {
      ++p_;
    }
    return p_ != begin && detail::valid_number(sv(begin, std::size_t(p_ - begin)));
  }

  const char* p_;
  const char* const end_;
};

}  // namespace

choice_text_scanner::result choice_text_scanner::scan(std::string_view json) {
  // The same reading as the general scan (response_rewriter.cpp): the last "choices" member
  // counts; in it only element 0, when an object whose "index" (if any) is exactly 0; its "text",
  // else its delta's "content", else its message's "content", each the last of its name.
  cursor c(json);
  std::optional<sv> text;
  c.ws();
  const bool valid = c.object(1, [&](sv key) {
    if (key != "choices") return c.skip_value(1);
    text.reset();
    if (!c.at('[')) return c.skip_value(1);
    return c.array(2, [&](int i) {
      if (i > 0 || !c.at('{')) return c.skip_value(2);
      bool index_zero = true;
      std::optional<sv> choice_text, delta_content, message_content;
      const bool walked = c.object(3, [&](sv member) {
        const bool delta = member == "delta";
        const bool message = member == "message";
        if ((delta || message) && c.at('{')) {
          auto& content = delta ? delta_content : message_content;
          content.reset();
          return c.object(4, [&](sv inner) {
            const char* begin = c.pos();
            if (!c.skip_value(4)) return false;
            if (inner == "content") content = string_body(sv(begin, std::size_t(c.pos() - begin)));
            return true;
          });
        }
        const char* begin = c.pos();
        if (!c.skip_value(3)) return false;
        const sv token(begin, std::size_t(c.pos() - begin));
        if (delta) {
          delta_content.reset();
        } else if (message) {
          message_content.reset();
        } else if (member == "index") {
          index_zero = token == "0";
        } else if (member == "text") {
          choice_text = string_body(token);
        }
        return true;
      });
      if (walked && index_zero) {
        text = choice_text ? choice_text : delta_content ? delta_content : message_content;
      }
      return walked;
    });
  });
  if (!valid) return {};
  c.ws();
  if (!c.at_end()) return {};
  if (!text) return {outcome::no_text, {}};
  return {outcome::text, *text};
}

}  // namespace glm::protocol
