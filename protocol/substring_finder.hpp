#pragma once

#include <array>
#include <cstddef>
#include <string_view>

namespace glm::protocol {

// Finds a short fixed needle (a JSON key, a marker word) in text, Boyer-Moore-Horspool style: on
// a mismatch it jumps by up to the needle's length. string_view::find calls memchr for the
// needle's first byte and compares at each hit; for a needle starting with '"' or a common letter
// that was dozens of calls per SSE event, and glibc's memmem is plain C. Build one per needle,
// once (constexpr), and reuse it. The needle must outlive the finder.
class substring_finder {
 public:
  constexpr explicit substring_finder(std::string_view needle) : needle_(needle) {
    shift_.fill(needle.size());
    for (std::size_t i = 0; i + 1 < needle.size(); ++i) {
      shift_[static_cast<unsigned char>(needle[i])] = needle.size() - 1 - i;
    }
  }

  // The offset of the first occurrence at or after `from`, or npos.
  std::size_t find(std::string_view hay, std::size_t from = 0) const {
    const std::size_t n = needle_.size();
    if (n == 0) return from <= hay.size() ? from : std::string_view::npos;
    const char last = needle_[n - 1];
    for (std::size_t at = from; at + n <= hay.size();) {
      const char c = hay[at + n - 1];
      if (c == last && hay.compare(at, n - 1, needle_, 0, n - 1) == 0) return at;
      at += shift_[static_cast<unsigned char>(c)];
    }
    return std::string_view::npos;
  }

  bool in(std::string_view hay) const { return find(hay) != std::string_view::npos; }

 private:
  std::string_view needle_;
  std::array<std::size_t, 256> shift_{};
};

}  // namespace glm::protocol
