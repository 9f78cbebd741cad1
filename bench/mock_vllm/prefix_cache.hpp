#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace glm::mock {

// A simulated vLLM prefix cache: an LRU of chained block hashes of the rendered prompt.
//
// Deliberately the mock's own scheme, not the proxy's: a block is `block_bytes` bytes of the
// text prompt_renderer produces (block_size tokens of chars_per_token bytes), and block i's hash
// covers block i and the hash of block i-1, so a hit on block i implies the whole prefix before it
// matched, as in vLLM. Only full blocks are cached. A benchmark that routes by the proxy's own
// prediction is scored against this, an independent truth.
//
// Thread-safe: every member function may be called from any session on any thread. Hashing
// (block_hashes) is static and takes no lock; match, insert and clear hold the mutex briefly.
class prefix_cache {
 public:
  // capacity_blocks: how many blocks it holds (the LRU evicts beyond), or `unbounded`.
  static constexpr std::int64_t unbounded = -1;
  explicit prefix_cache(std::int64_t capacity_blocks) : capacity_(capacity_blocks) {}

  // The chained hashes of the full `block_bytes`-byte blocks of `text`; a tail shorter than a
  // block has none.
  static std::vector<std::uint64_t> block_hashes(std::string_view text, std::size_t block_bytes);

  // How many leading blocks of `hashes`, at most `max_blocks`, are cached. The matched blocks
  // become the most recently used.
  std::size_t match(const std::vector<std::uint64_t>& hashes, std::size_t max_blocks);

  // Caches every block of `hashes` (called when a prefill completes), evicting the least recently
  // used beyond the capacity. Block 0 ends as the most recent, so a prompt's tail goes first, as
  // vLLM frees a finished request's blocks tail first.
  void insert(const std::vector<std::uint64_t>& hashes);

  // Forgets every block (POST /reset_prefix_cache).
  void clear();

  std::int64_t capacity() const { return capacity_; }
  std::int64_t size() const;
  std::int64_t evictions() const;

 private:
  // Moves `hash` to the front (most recent), inserting it if absent. Caller holds mutex_.
  void touch(std::uint64_t hash);

  const std::int64_t capacity_;
  mutable std::mutex mutex_;
  std::list<std::uint64_t> lru_;  // front: most recently used; guarded by mutex_
  std::unordered_map<std::uint64_t, std::list<std::uint64_t>::iterator> index_;  // guarded
  std::int64_t evictions_ = 0;                                                   // guarded
};

}  // namespace glm::mock
