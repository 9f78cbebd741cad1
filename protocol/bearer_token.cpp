#include "protocol/bearer_token.hpp"

#include <cstddef>

namespace glm::protocol {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t';
}

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

}  // namespace

std::string_view bearer_token::token_of(std::string_view authorization) {
  constexpr std::string_view scheme = "bearer";
  std::size_t i = 0;
  while (i < authorization.size() && is_space(authorization[i])) ++i;
  if (authorization.size() - i <= scheme.size()) return {};
  for (std::size_t k = 0; k < scheme.size(); ++k) {
    if (lower(authorization[i + k]) != scheme[k]) return {};
  }
  i += scheme.size();
  // "Bearerabc" is not the Bearer scheme: at least one space must follow it.
  if (!is_space(authorization[i])) return {};
  while (i < authorization.size() && is_space(authorization[i])) ++i;
  std::size_t end = authorization.size();
  while (end > i && is_space(authorization[end - 1])) --end;
  return authorization.substr(i, end - i);
}

bool bearer_token::constant_time_equal(std::string_view given, std::string_view expected) {
  // Accumulate differences over the secret's whole length; never branch on the bytes compared.
  // Past the end of `given`, compare against 0 (the length term below still rejects it).
  std::size_t diff = given.size() ^ expected.size();
  for (std::size_t i = 0; i < expected.size(); ++i) {
    unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff |= static_cast<unsigned char>(g ^ static_cast<unsigned char>(expected[i]));
    // Keep the compiler from turning the loop into an early exit once diff is non-zero.
    __asm__ __volatile__("" : "+r"(diff));
  }
  return diff == 0;
}

bool bearer_token::matches(std::string_view authorization, std::string_view expected) {
  if (expected.empty()) return false;
  return constant_time_equal(token_of(authorization), expected);
}

}  // namespace glm::protocol
