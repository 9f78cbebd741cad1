#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace glm::balancer {

// X-Session-Id -> the instance its session was last sent to, bounded (LRU): a soft pin that the
// selector follows only while that instance can be chosen and is not overloaded.
//
// Not thread-safe: the balancer calls it under its lock.
class session_pins {
 public:
  std::optional<std::uint64_t> find(std::string_view key);
  void pin(std::string_view key, std::uint64_t id, std::size_t max_entries);
  std::size_t size() const { return map_.size(); }

 private:
  std::list<std::pair<std::string, std::uint64_t>> lru_;  // most recent first
  // Keys view the strings in lru_, whose nodes never move.
  std::unordered_map<std::string_view, std::list<std::pair<std::string, std::uint64_t>>::iterator>
      map_;
};

}  // namespace glm::balancer
