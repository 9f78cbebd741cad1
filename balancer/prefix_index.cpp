#include "balancer/prefix_index.hpp"

#include <algorithm>
#include <vector>

#include "protocol/prefix_blocks.hpp"

namespace glm::balancer {

prefix_index::match prefix_index::longest_match(std::span<const std::uint64_t> blocks) const {
  // The largest n with blocks[n-1] present; entries are prefix-closed, so presence is monotone.
  auto longest = [&](std::size_t hi, auto&& present) {
    std::size_t lo = 0;
    while (lo < hi) {
      const std::size_t mid = lo + (hi - lo + 1) / 2;
      if (present(blocks[mid - 1])) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    return lo;
  };
  match m;
  m.blocks = longest(blocks.size(), [&](std::uint64_t h) { return contains(h); });
  m.confirmed = longest(m.blocks, [&](std::uint64_t h) {
    auto it = map_.find(h);
    return it != map_.end() && it->second.confirmed;
  });
  return m;
}

void prefix_index::sequences(std::span<const std::uint64_t> blocks, std::size_t n,
                             std::vector<std::uint64_t>& out) const {
  out.clear();
  n = std::min(n, blocks.size());
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    auto it = map_.find(blocks[i]);
    out.push_back(it == map_.end() ? 0 : it->second.seq);
  }
}

void prefix_index::record(std::span<const std::uint64_t> blocks) {
  // Deepest first, so the first block ends up the most recently used and eviction keeps the
  // entries prefix-closed.
  for (std::size_t k = blocks.size(); k-- > 0;) {
    const std::uint64_t h = blocks[k];
    auto it = map_.find(h);
    if (it != map_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.pos);
      it->second.seq = next_seq_++;
      continue;
    }
    lru_.push_front(h);
    const auto length = static_cast<std::uint64_t>(
        protocol::prefix_blocks::end(k) - (k == 0 ? 0 : protocol::prefix_blocks::end(k - 1)));
    map_.emplace(h, entry{lru_.begin(), next_seq_++, length, false});
    bytes_ += length;
  }
  evict_past_bounds();
}

void prefix_index::set_max_bytes(std::uint64_t max_bytes) {
  max_bytes_ = max_bytes;
  evict_past_bounds();
}

void prefix_index::evict_past_bounds() {
  while (!lru_.empty() &&
         (map_.size() > max_entries_ || (max_bytes_ != 0 && bytes_ > max_bytes_))) {
    erase(map_.find(lru_.back()));
  }
}

void prefix_index::erase(std::unordered_map<std::uint64_t, entry>::iterator it) {
  bytes_ -= it->second.bytes;
  lru_.erase(it->second.pos);
  map_.erase(it);
}

void prefix_index::confirm(std::span<const std::uint64_t> blocks) {
  for (auto h : blocks) {
    auto it = map_.find(h);
    if (it != map_.end()) it->second.confirmed = true;
  }
}

void prefix_index::erase_unconfirmed(std::span<const std::uint64_t> blocks, std::size_t from) {
  for (std::size_t i = from; i < blocks.size(); ++i) {
    auto it = map_.find(blocks[i]);
    if (it == map_.end() || it->second.confirmed) continue;
    erase(it);
  }
}

std::size_t prefix_index::withdraw_older_than(std::uint64_t seq) {
  std::size_t n = 0;
  while (!lru_.empty()) {
    auto it = map_.find(lru_.back());
    if (it->second.seq >= seq) break;
    erase(it);
    ++n;
  }
  return n;
}

bool prefix_index::settle(std::span<const std::uint64_t> blocks, std::size_t confirmed,
                          std::span<const std::uint64_t> sequences, double cached_bytes) {
  using protocol::prefix_blocks;
  // How many blocks the answer says were cached, generously: the bytes-per-token ratio is an
  // average and the chat template adds tokens the raw bytes do not show.
  const std::size_t cached_blocks = prefix_blocks::count(
      static_cast<std::size_t>(cached_bytes * 1.25) + 2 * prefix_blocks::small_block);
  const bool contradicted = confirmed > cached_blocks;
  if (contradicted) {
    // The cache evicted block j (or restarted). An LRU cache evicts in order of last use, so
    // everything last used before block j was is gone too; what was used after it stays.
    const std::size_t j = prefix_blocks::count(static_cast<std::size_t>(cached_bytes));
    if (j < sequences.size() && sequences[j] != 0) withdraw_older_than(sequences[j] + 1);
  }
  // The prefill computed the whole prompt: its blocks are in that cache now (those the
  // withdrawal removed included, so they are recorded again).
  record(blocks);
  confirm(blocks);
  return contradicted;
}

void prefix_index::clear() {
  map_.clear();
  lru_.clear();
  bytes_ = 0;
}

}  // namespace glm::balancer
