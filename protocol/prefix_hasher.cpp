#include "protocol/prefix_hasher.hpp"

// Inlined: a 256-byte block is hashed in a few dozen nanoseconds, where a call through the shared
// library would add a noticeable share; it also exposes XXH3_state_t for the stack.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "protocol/prefix_blocks.hpp"

namespace glm::protocol {
namespace {

// Distinct seeds keep a session id that happens to equal a user id (or a prompt) apart.
constexpr std::uint64_t session_seed = 0x5e55'1011'0000'0001;
constexpr std::uint64_t user_seed = 0x05e7'0000'0000'0002;
constexpr std::uint64_t prompt_seed = 0x9701'7000'0000'0003;
constexpr std::uint64_t anchor_seed = 0xa7c4'0700'0000'0004;

// The members whose bytes change the rendered prefix of a prompt (and so the cache it can hit).
constexpr std::array<std::string_view, 6> prefix_members = {
    "model", "tools", "chat_template", "chat_template_kwargs", "documents", "cache_salt"};

std::uint64_t fmix64(std::uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

// h_i from H(block_i) and h_{i-1}. One XXH3 call per block at seed 0 plus this mix is cheaper
// than seeding XXH3 with h_{i-1}, which derives a fresh secret per call for blocks > 240 bytes.
std::uint64_t chain(std::uint64_t prev, std::uint64_t block_hash) {
  return fmix64(block_hash ^ (prev + 0x9e3779b97f4a7c15ULL + (prev << 6) + (prev >> 2)));
}

std::string_view value_of(const client_request& req, const member_range* m) {
  if (m == nullptr || m->end < m->value_begin || m->end > req.body.size()) return {};
  return req.body.substr(m->value_begin, m->end - m->value_begin);
}

std::uint64_t seed_of(const client_request& req) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  for (auto name : prefix_members) {
    auto v = value_of(req, req.find(name));
    // The name goes in too, so {"tools": X} and {"documents": X} seed differently.
    XXH3_64bits_update(&state, name.data(), name.size());
    XXH3_64bits_update(&state, v.data(), v.size());
    const char sep = '\0';
    XXH3_64bits_update(&state, &sep, 1);
  }
  return XXH3_64bits_digest(&state);
}

// Index of the closing quote of the JSON string whose body starts at `i`, or npos.
std::size_t string_end(std::string_view s, std::size_t i) {
  while (i < s.size()) {
    const void* q = std::memchr(s.data() + i, '"', s.size() - i);
    if (q == nullptr) return std::string_view::npos;
    std::size_t at = static_cast<std::size_t>(static_cast<const char*>(q) - s.data());
    std::size_t backslashes = 0;
    while (at - backslashes > i && s[at - backslashes - 1] == '\\') ++backslashes;
    if (backslashes % 2 == 0) return at;
    i = at + 1;
  }
  return std::string_view::npos;
}

// One past the '}' of the first element of the `messages` array whose "role" is "user", if it ends
// within the first `limit` bytes. The body was already validated by request_splicer::parse, so
// this only tracks strings and nesting. Strings are skipped with memchr: a long system prompt
// costs little.
std::size_t first_user_message_end(std::string_view messages, std::size_t limit) {
  const std::string_view s = messages.substr(0, std::min(limit, messages.size()));
  int depth = 0;
  bool is_user = false;
  bool expect_role_value = false;  // just read the key "role" of an element (depth 2)
  bool last_was_role_key = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '"') {
      const std::size_t close = string_end(s, i + 1);
      if (close == std::string_view::npos) return std::string_view::npos;
      const std::string_view text = s.substr(i + 1, close - i - 1);
      if (depth == 2) {
        if (expect_role_value) {
          is_user = is_user || text == "user";
          expect_role_value = false;
          last_was_role_key = false;
        } else {
          last_was_role_key = text == "role";
        }
      }
      i = close;
      continue;
    }
    switch (c) {
      case '{':
      case '[':
        ++depth;
        if (depth == 2) is_user = false;
        break;
      case '}':
      case ']':
        if (depth == 2 && c == '}' && is_user) return i + 1;
        --depth;
        break;
      case ':':
        if (depth == 2 && last_was_role_key) expect_role_value = true;
        break;
      case ',':
        if (depth == 2) {
          last_was_role_key = false;
          expect_role_value = false;
        }
        break;
      default:
        if (depth == 2 && expect_role_value && c != ' ' && c != '\n' && c != '\r' && c != '\t') {
          expect_role_value = false;  // a role that is not a string
        }
        break;
    }
  }
  return std::string_view::npos;
}

// A gear table for content-defined chunking, generated deterministically (splitmix64) so that
// every proxy replica cuts plain prompts at the same places.
struct gear_table {
  std::array<std::uint64_t, 256> v{};
  constexpr gear_table() {
    std::uint64_t x = 0x243f6a8885a308d3ULL;
    for (auto& e : v) {
      x += 0x9e3779b97f4a7c15ULL;
      std::uint64_t z = x;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      e = z ^ (z >> 31);
    }
  }
};
constexpr gear_table gear{};

// The first content-defined boundary of a plain prompt: past 512 bytes, where a gear rolling hash
// has its top 10 bits clear (about every 1 KiB of text). Depends only on the bytes before it, so
// every later turn of the conversation, which starts with the same bytes, finds the same cut.
std::size_t content_boundary(std::string_view s, std::size_t limit) {
  constexpr std::size_t min_bytes = 512;
  constexpr std::uint64_t mask = 0xffc0'0000'0000'0000ULL;
  const std::size_t n = std::min(limit, s.size());
  std::uint64_t h = 0;
  for (std::size_t i = 0; i < n; ++i) {
    h = (h << 1) + gear.v[static_cast<unsigned char>(s[i])];
    if (i + 1 >= min_bytes && (h & mask) == 0) return i + 1;
  }
  return std::string_view::npos;
}

std::uint64_t nonzero(std::uint64_t h) {
  return h == 0 ? 1 : h;
}

}  // namespace

std::string_view prefix_hasher::prompt_bytes(const client_request& req) {
  if (auto m = value_of(req, req.find("messages")); !m.empty()) return m;
  return value_of(req, req.find("prompt"));
}

std::uint64_t prefix_hasher::routing_key(const client_request& req, const route_headers& headers) {
  if (!headers.session_id.empty()) {
    return nonzero(
        XXH3_64bits_withSeed(headers.session_id.data(), headers.session_id.size(), session_seed));
  }
  if (!headers.user_id.empty()) {
    return nonzero(XXH3_64bits_withSeed(headers.user_id.data(), headers.user_id.size(), user_seed));
  }
  // Only a string "user": the raw token, quotes and escapes included, is the same for the same
  // user every time.
  if (auto user = value_of(req, req.find("user")); user.size() > 2 && user.front() == '"') {
    return nonzero(XXH3_64bits_withSeed(user.data(), user.size(), user_seed));
  }
  const auto prompt = prompt_bytes(req).substr(0, routing_prefix_bytes);
  return nonzero(XXH3_64bits_withSeed(prompt.data(), prompt.size(), prompt_seed));
}

void prefix_hasher::digest(const client_request& req, const route_headers& headers,
                           prefix_digest& out) {
  out.blocks.clear();
  out.routing_key = routing_key(req, headers);
  const std::uint64_t seed = seed_of(req);
  const std::string_view whole = prompt_bytes(req);
  const std::string_view prompt = whole.substr(0, max_hashed_bytes);
  out.prompt_bytes = prompt.size();

  const std::size_t n = prefix_blocks::count(prompt.size());
  out.blocks.reserve(n);
  std::uint64_t h = seed;
  std::size_t begin = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t end = prefix_blocks::end(i);
    h = chain(h, XXH3_64bits(prompt.data() + begin, end - begin));
    out.blocks.push_back(h);
    begin = end;
  }

  std::size_t anchor_end = req.find("messages") != nullptr && !whole.empty()
                               ? first_user_message_end(prompt, anchor_max_bytes)
                               : content_boundary(prompt, anchor_max_bytes);
  if (anchor_end == std::string_view::npos) {
    // No user message (or boundary) within reach: a prompt that is still short covers itself;
    // a long one is cut at a fixed offset, which is stable across turns.
    anchor_end = std::min(prompt.size(), anchor_max_bytes);
  }
  out.anchor_bytes = anchor_end;
  out.anchor = nonzero(XXH3_64bits_withSeed(prompt.data(), anchor_end, seed ^ anchor_seed));
}

prefix_digest prefix_hasher::digest(const client_request& req, const route_headers& headers) {
  prefix_digest d;
  digest(req, headers, d);
  return d;
}

}  // namespace glm::protocol
