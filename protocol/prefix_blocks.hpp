#pragma once

#include <cstddef>
#include <cstdint>

namespace glm::protocol {

// Where the prefix blocks of a prompt end, as byte offsets into the hashed bytes. The schedule
// depends only on the position, never on the prompt's length, so a conversation that grows turn by
// turn cuts its shared prefix at the same offsets every time (the hashes of the shared blocks
// repeat). Blocks are 256 bytes up to 64 KiB, then 1/16 of their start offset (4 KiB from 64 KiB,
// 8 KiB from 128 KiB, ...): a 1 MiB prompt has 320 blocks, so hashing, index lookups and index
// updates stay bounded, and the predicted match is still exact to about 6 % of its length.
//
// Shared by protocol/ (which hashes) and balancer/ (which converts a prefiller's cached tokens back
// into blocks); header-only and constexpr.
struct prefix_blocks {
  static constexpr std::size_t small_block = 256;
  static constexpr std::size_t small_count = 256;  // 256 blocks of 256 bytes: the first 64 KiB
  static constexpr std::size_t per_doubling = 16;

  // One past the last byte of block i (0-based).
  static constexpr std::size_t end(std::size_t i) {
    if (i < small_count) return (i + 1) * small_block;
    const std::size_t j = i - small_count;
    const std::size_t d = j / per_doubling;
    const std::size_t k = j % per_doubling;
    const std::size_t start = (small_count * small_block) << d;
    return start + (k + 1) * (start / per_doubling);
  }

  // How many whole blocks the first `bytes` bytes contain (blocks past them are partial or absent).
  static constexpr std::size_t count(std::size_t bytes) {
    if (bytes < small_count * small_block) return bytes / small_block;
    std::size_t start = small_count * small_block;
    std::size_t n = small_count;
    // At most 64 doublings fit a size_t; each loop is one doubling of the prefix.
    while (bytes >= 2 * start) {
      n += per_doubling;
      start *= 2;
    }
    return n + (bytes - start) / (start / per_doubling);
  }
};

}  // namespace glm::protocol
