#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

namespace glm::mock {

// At most `limit` prefills run at once; the others wait in arrival order (FIFO), as requests wait
// in vLLM's scheduler queue. So overload shows as time to first token, and /metrics can report
// a waiting count that is real.
//
// Thread-safe: sessions on any strand acquire and release. A waiter sleeps on a timer of its own
// strand; release hands the slot to the first waiter and wakes it on that strand. Outlives every
// session (owned by mock_server).
class prefill_gate {
 public:
  // limit 0: no limit, acquire never waits.
  explicit prefill_gate(int limit) : limit_(limit), free_(limit) {}

  // One slot, given back on destruction. Empty (false) if the waiter gave up.
  class slot {
   public:
    slot() = default;
    explicit slot(prefill_gate* gate) : gate_(gate) {}
    slot(slot&& other) noexcept : gate_(std::exchange(other.gate_, nullptr)) {}
    slot& operator=(slot&& other) noexcept {
      if (this != &other) {
        reset();
        gate_ = std::exchange(other.gate_, nullptr);
      }
      return *this;
    }
    ~slot() { reset(); }
    explicit operator bool() const { return gate_ != nullptr; }
    void reset() {
      if (gate_ != nullptr) std::exchange(gate_, nullptr)->release();
    }

   private:
    prefill_gate* gate_ = nullptr;
  };

  // Waits for a slot, or until `give_up` completes first (the peer left): then an empty slot.
  // `give_up` runs on the caller's strand alongside the wait and is cancelled when a slot comes.
  boost::asio::awaitable<slot> acquire(boost::asio::awaitable<void> give_up);

  // Called once the io_context has stopped and before it is destroyed: drops the queued waiters
  // (their timers belong to that io_context) and wakes nobody from then on, since the coroutines
  // destroyed with the io_context give back their slots on the way out.
  void close();

  std::int64_t waiting() const { return waiting_.load(); }
  std::int64_t running() const { return running_.load(); }
  int limit() const { return limit_; }

 private:
  struct waiter {
    explicit waiter(boost::asio::any_io_executor executor)
        : timer(std::move(executor), boost::asio::steady_timer::time_point::max()) {}
    boost::asio::steady_timer timer;  // touched only on its own strand
    bool granted = false;             // guarded by the gate's mutex_
  };

  void release();

  const int limit_;
  std::mutex mutex_;
  int free_;                                   // guarded by mutex_
  bool closed_ = false;                        // guarded by mutex_
  std::deque<std::shared_ptr<waiter>> queue_;  // guarded by mutex_
  std::atomic<std::int64_t> waiting_{0};
  std::atomic<std::int64_t> running_{0};
};

}  // namespace glm::mock
