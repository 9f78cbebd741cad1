#pragma once

#include <atomic>
#include <cstddef>
#include <optional>

namespace glm::proxy {

// Counts things held at once (client connections, requests being answered) against a limit,
// across threads.
//
// Thread safety: try_enter() and ticket destruction may run on any thread at any time; the count
// is one atomic. Lifetime: the gate must outlive every ticket it handed out.
class connection_gate {
 public:
  // Proof of one place taken; gives it back when destroyed. Move-only.
  class ticket {
   public:
    ticket() = default;
    ticket(ticket&& other) noexcept : gate_(other.gate_) { other.gate_ = nullptr; }
    ticket& operator=(ticket&& other) noexcept;
    ticket(const ticket&) = delete;
    ticket& operator=(const ticket&) = delete;
    ~ticket() { reset(); }

    // Gives the place back now; a ticket that holds none does nothing.
    void reset();
    explicit operator bool() const { return gate_ != nullptr; }

   private:
    friend class connection_gate;
    explicit ticket(connection_gate* gate) : gate_(gate) {}
    connection_gate* gate_ = nullptr;
  };

  // limit 0: no limit (every try_enter succeeds, and is still counted).
  explicit connection_gate(std::size_t limit) : limit_(limit) {}

  // A ticket when fewer than `limit` are held, nullopt otherwise. Never blocks.
  std::optional<ticket> try_enter();

  // Tickets held now.
  std::size_t held() const { return held_.load(std::memory_order_relaxed); }
  std::size_t limit() const { return limit_; }

 private:
  const std::size_t limit_;
  std::atomic<std::size_t> held_{0};
};

}  // namespace glm::proxy
