#include "bench/mock_vllm/prefix_cache.hpp"

namespace glm::mock {
namespace {

// FNV-1a, 64 bits, seeded with the previous block's hash: simple, stable across runs and
// platforms, and unrelated to anything glm-proxy hashes with.
std::uint64_t chain_hash(std::uint64_t previous, std::string_view block) {
  constexpr std::uint64_t prime = 0x100000001b3ULL;
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (int i = 0; i < 8; ++i) {
    h ^= (previous >> (8 * i)) & 0xff;
    h *= prime;
  }
  for (const char c : block) {
    h ^= static_cast<unsigned char>(c);
    h *= prime;
  }
  return h;
}

}  // namespace

std::vector<std::uint64_t> prefix_cache::block_hashes(std::string_view text,
                                                      std::size_t block_bytes) {
  std::vector<std::uint64_t> out;
  if (block_bytes == 0) return out;
  out.reserve(text.size() / block_bytes);
  std::uint64_t previous = 0;
  for (std::size_t at = 0; at + block_bytes <= text.size(); at += block_bytes) {
    previous = chain_hash(previous, text.substr(at, block_bytes));
    out.push_back(previous);
  }
  return out;
}

std::size_t prefix_cache::match(const std::vector<std::uint64_t>& hashes, std::size_t max_blocks) {
  const std::size_t n = std::min(max_blocks, hashes.size());
  std::lock_guard lock(mutex_);
  std::size_t matched = 0;
  while (matched < n && index_.contains(hashes[matched])) ++matched;
  // Tail first, so that block 0 ends up the most recent (see insert()).
  for (std::size_t i = matched; i-- > 0;) touch(hashes[i]);
  return matched;
}

void prefix_cache::insert(const std::vector<std::uint64_t>& hashes) {
  if (capacity_ == 0) return;
  std::lock_guard lock(mutex_);
  for (std::size_t i = hashes.size(); i-- > 0;) touch(hashes[i]);
  if (capacity_ == unbounded) return;
  while (static_cast<std::int64_t>(lru_.size()) > capacity_) {
    index_.erase(lru_.back());
    lru_.pop_back();
    ++evictions_;
  }
}

void prefix_cache::touch(std::uint64_t hash) {
  if (const auto it = index_.find(hash); it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  lru_.push_front(hash);
  index_.emplace(hash, lru_.begin());
}

void prefix_cache::clear() {
  std::lock_guard lock(mutex_);
  lru_.clear();
  index_.clear();
}

std::int64_t prefix_cache::size() const {
  std::lock_guard lock(mutex_);
  return static_cast<std::int64_t>(lru_.size());
}

std::int64_t prefix_cache::evictions() const {
  std::lock_guard lock(mutex_);
  return evictions_;
}

}  // namespace glm::mock
