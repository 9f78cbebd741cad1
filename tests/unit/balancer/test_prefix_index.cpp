#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "balancer/prefix_index.hpp"

using glm::balancer::prefix_index;

namespace {

// A chain of `n` block hashes for conversation `c`, sharing its first `shared` blocks with every
// other conversation (a system prompt).
std::vector<std::uint64_t> chain(std::uint64_t c, std::size_t n, std::size_t shared = 0) {
  std::vector<std::uint64_t> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(i < shared ? 1000 + i : c * 1'000'000 + i);
  return out;
}

}  // namespace

TEST_CASE("the longest match of a recorded chain and of its continuations", "[prefix_index]") {
  prefix_index idx(1000);
  const auto turn1 = chain(1, 10);
  CHECK(idx.longest_match(turn1).blocks == 0);
  idx.record(turn1);
  CHECK(idx.size() == 10);
  auto m = idx.longest_match(turn1);
  CHECK(m.blocks == 10);
  CHECK(m.confirmed == 0);  // nothing answered yet

  const auto turn2 = chain(1, 25);  // the same conversation, grown
  CHECK(idx.longest_match(turn2).blocks == 10);
  CHECK(idx.longest_match(chain(2, 25)).blocks == 0);
  CHECK(idx.longest_match(chain(2, 25, 4)).blocks == 0);  // shares blocks 0..3 only with itself

  idx.confirm(turn1);
  m = idx.longest_match(turn2);
  CHECK(m.blocks == 10);
  CHECK(m.confirmed == 10);

  idx.record(turn2);
  m = idx.longest_match(turn2);
  CHECK(m.blocks == 25);
  CHECK(m.confirmed == 10);
}

TEST_CASE("eviction is LRU and keeps a chain prefix-closed", "[prefix_index]") {
  prefix_index idx(20);
  const auto a = chain(1, 12);
  const auto b = chain(2, 12);
  idx.record(a);
  idx.record(b);  // 24 entries > 20: a's 4 deepest blocks go first
  CHECK(idx.size() == 20);
  CHECK(idx.longest_match(a).blocks == 8);
  CHECK(idx.longest_match(b).blocks == 12);
  idx.record(a);  // a is the most recent now; b loses its deepest blocks
  CHECK(idx.size() == 20);
  CHECK(idx.longest_match(a).blocks == 12);
  CHECK(idx.longest_match(b).blocks == 8);
}

TEST_CASE("withdrawing what an answer contradicts keeps what is newer", "[prefix_index]") {
  prefix_index idx(1000);
  const auto old_conv = chain(1, 6);
  const auto newer = chain(2, 6);
  idx.record(old_conv);
  idx.record(newer);
  std::vector<std::uint64_t> seq;
  idx.sequences(old_conv, 6, seq);
  REQUIRE(seq.size() == 6);
  CHECK(seq[0] > seq[5]);  // the first block is touched last
  // The cache says old_conv's block 2 is gone: so is everything last used before it was.
  const auto n = idx.withdraw_older_than(seq[2] + 1);
  CHECK(n == 4);  // blocks 5, 4, 3, 2 of old_conv
  CHECK(idx.longest_match(old_conv).blocks == 2);
  CHECK(idx.longest_match(newer).blocks == 6);
}

TEST_CASE("a failed prefill takes back only its own unconfirmed blocks", "[prefix_index]") {
  prefix_index idx(1000);
  const auto turn1 = chain(1, 4);
  idx.record(turn1);
  idx.confirm(turn1);
  const auto turn2 = chain(1, 9);
  idx.record(turn2);
  idx.erase_unconfirmed(turn2, 4);
  CHECK(idx.size() == 4);
  CHECK(idx.longest_match(turn2).blocks == 4);
  idx.clear();
  CHECK(idx.size() == 0);
  CHECK(idx.longest_match(turn1).blocks == 0);
}

TEST_CASE("a byte bound evicts the least recently used and counts a shared block once",
          "[prefix_index]") {
  prefix_index idx(1000);
  const auto a = chain(1, 12, 4);  // 12 blocks of 256 bytes, the first 4 a shared prompt
  const auto b = chain(2, 12, 4);  // shares a's first 4 blocks: 8 new ones
  idx.record(a);
  idx.record(b);
  CHECK(idx.size() == 20);
  CHECK(idx.bytes() == 20 * 256);
  // 4 blocks too many: a's 4 deepest, the least recently used, go.
  idx.set_max_bytes(16 * 256);
  CHECK(idx.bytes() == 16 * 256);
  CHECK(idx.longest_match(a).blocks == 8);
  CHECK(idx.longest_match(b).blocks == 12);
  // Recording past the bound evicts at once too: a is the most recent now, b loses its tail.
  idx.record(a);
  CHECK(idx.bytes() == 16 * 256);
  CHECK(idx.longest_match(a).blocks == 12);
  CHECK(idx.longest_match(b).blocks == 8);
  // Every way out keeps the count: withdrawing, a failed prefill's take-back, clearing.
  idx.erase_unconfirmed(b, 6);
  CHECK(idx.bytes() == idx.size() * 256);
  idx.withdraw_older_than(1'000'000);
  CHECK(idx.size() == 0);
  CHECK(idx.bytes() == 0);
  idx.record(a);
  idx.clear();
  CHECK(idx.bytes() == 0);
  // 0 lifts the bound.
  idx.set_max_bytes(0);
  idx.record(a);
  idx.record(chain(3, 40));
  CHECK(idx.size() == 52);
}
