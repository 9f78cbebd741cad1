#include "proxy/front/connection_gate.hpp"

namespace glm::proxy {

connection_gate::ticket& connection_gate::ticket::operator=(ticket&& other) noexcept {
  if (this != &other) {
    reset();
    gate_ = other.gate_;
    other.gate_ = nullptr;
  }
  return *this;
}

void connection_gate::ticket::reset() {
  if (gate_ != nullptr) gate_->held_.fetch_sub(1, std::memory_order_acq_rel);
  gate_ = nullptr;
}

std::optional<connection_gate::ticket> connection_gate::try_enter() {
  // Compare-and-swap, not add-then-undo: the count never shows more than the limit, even for a
  // moment, so a release racing an over-limit attempt cannot turn away a connection that fits.
  std::size_t n = held_.load(std::memory_order_relaxed);
  do {
    if (limit_ != 0 && n >= limit_) return std::nullopt;
  } while (
      !held_.compare_exchange_weak(n, n + 1, std::memory_order_acq_rel, std::memory_order_relaxed));
  return ticket(this);
}

}  // namespace glm::proxy
