#include "balancer/session_pins.hpp"

#include <algorithm>

namespace glm::balancer {

std::optional<std::uint64_t> session_pins::find(std::string_view key) {
  auto it = map_.find(key);
  if (it == map_.end()) return std::nullopt;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->second;
}

void session_pins::pin(std::string_view key, std::uint64_t id, std::size_t max_entries) {
  if (auto it = map_.find(key); it != map_.end()) {
    it->second->second = id;
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  lru_.emplace_front(std::string(key), id);
  map_.emplace(lru_.front().first, lru_.begin());
  while (map_.size() > std::max<std::size_t>(1, max_entries)) {
    map_.erase(lru_.back().first);
    lru_.pop_back();
  }
}

}  // namespace glm::balancer
