#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

namespace glm::balancer {

// What one instance's prefix cache is predicted to hold: a bounded LRU of chained block hashes
// (protocol/prefix_hasher). Because block i's hash covers blocks 0..i, the entries of one prompt
// are prefix-closed, and they are touched deepest-first so eviction also removes them
// deepest-first; the longest match is then found by binary search (O(log n) lookups).
//
// An entry is unconfirmed until a prefill answer shows the instance computed it; only confirmed
// entries can be contradicted by an answer (an unconfirmed one may still be filling under a
// prefill in flight). Every touch carries a sequence number; an answer that shows block j was
// evicted withdraws everything last touched before j was (an LRU cache evicts in that order), not
// the whole instance.
//
// Two bounds, whichever is hit first evicts the least recently used: max_entries
// (--cache-max-entries), and optionally max_bytes, the prompt bytes the instance's engine can hold
// (its KV capacity in tokens, from vllm:cache_config_info, times the learned bytes per token).
// Entries are counted in bytes by the block schedule (protocol/prefix_blocks), and a block shared
// by several prompts once, as the engine stores it once.
//
// Not thread-safe: the balancer calls it under its lock.
class prefix_index {
 public:
  explicit prefix_index(std::size_t max_entries)
      : max_entries_(max_entries == 0 ? 1 : max_entries) {}

  struct match {
    std::size_t blocks = 0;     // leading blocks present
    std::size_t confirmed = 0;  // leading blocks present and confirmed (<= blocks)
  };
  match longest_match(std::span<const std::uint64_t> blocks) const;

  // The touch sequence numbers of blocks[0, n) (0 for an absent one), before record() renews them.
  void sequences(std::span<const std::uint64_t> blocks, std::size_t n,
                 std::vector<std::uint64_t>& out) const;

  // The instance is computing `blocks`: each becomes the most recently used (the first block the
  // most recent of all); new ones start unconfirmed. Evicts the least recently used past
  // max_entries.
  void record(std::span<const std::uint64_t> blocks);
  // A prefill answer: `blocks` are in the instance's cache now.
  void confirm(std::span<const std::uint64_t> blocks);
  // Removes blocks[from, end) that are still unconfirmed (their prefill failed).
  void erase_unconfirmed(std::span<const std::uint64_t> blocks, std::size_t from);
  // A prefill answer for `blocks`, whose first `confirmed` were predicted confirmed, with
  // `sequences` their touch sequences before the choice (sequences()); `cached_bytes` is what the
  // answer says was cached, converted from tokens. Returns whether a confirmed entry was
  // contradicted (a misprediction); then what was last used before the first contradicted block
  // is withdrawn. Either way the blocks are recorded and confirmed: the prefill computed them.
  bool settle(std::span<const std::uint64_t> blocks, std::size_t confirmed,
              std::span<const std::uint64_t> sequences, double cached_bytes);
  // Removes every entry last touched before sequence `seq`; returns how many.
  std::size_t withdraw_older_than(std::uint64_t seq);
  void clear();

  // Bounds the prompt bytes the entries cover (0: no bound, the default) and evicts the least
  // recently used past it at once.
  void set_max_bytes(std::uint64_t max_bytes);

  std::size_t size() const { return map_.size(); }
  std::size_t max_entries() const { return max_entries_; }
  std::uint64_t bytes() const { return bytes_; }
  std::uint64_t max_bytes() const { return max_bytes_; }

 private:
  struct entry {
    std::list<std::uint64_t>::iterator pos;  // in lru_, most recent first
    std::uint64_t seq = 0;
    std::uint64_t bytes = 0;  // the block's length in the prompt
    bool confirmed = false;
  };
  bool contains(std::uint64_t h) const { return map_.find(h) != map_.end(); }
  void erase(std::unordered_map<std::uint64_t, entry>::iterator it);
  void evict_past_bounds();

  std::size_t max_entries_;
  std::uint64_t max_bytes_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint64_t next_seq_ = 1;
  std::list<std::uint64_t> lru_;  // block hashes, most recently touched first
  std::unordered_map<std::uint64_t, entry> map_;
};

}  // namespace glm::balancer
