#include "protocol/request_id.hpp"

#include <cstdint>
#include <random>

namespace glm::protocol {

namespace {

std::mt19937_64& thread_generator() {
  // Seeded with a full seed_seq rather than one 32-bit draw, so two threads (or two processes
  // started together) do not share a sequence and collide on ids.
  thread_local std::mt19937_64 generator = [] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device(),
                       device(), device(), device(), device()};
    return std::mt19937_64(seed);
  }();
  return generator;
}

}  // namespace

std::string make_request_id() {
  std::mt19937_64& generator = thread_generator();
  std::uint64_t high = generator();
  std::uint64_t low = generator();
  high = (high & ~std::uint64_t(0xf000)) | 0x4000;                         // version 4
  low = (low & ~(std::uint64_t(0xc) << 60)) | (std::uint64_t(0x8) << 60);  // variant 10xx

  static constexpr char hex[] = "0123456789abcdef";
  std::string id(36, '-');
  std::size_t pos = 0;
  auto put = [&](std::uint64_t bits, int nibbles) {
    for (int k = nibbles - 1; k >= 0; --k) {
      if (pos == 8 || pos == 13 || pos == 18 || pos == 23) ++pos;  // keep the dashes
      id[pos++] = hex[(bits >> (4 * k)) & 0xf];
    }
  };
  put(high, 16);
  put(low, 16);
  return id;
}

bool is_sane_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace glm::protocol
