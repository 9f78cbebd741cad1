#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <optional>

#include "proxy/core/asio.hpp"

namespace glm::proxy {

// Bounds the completion requests in flight across all workers (--max-inflight), with a bounded
// first-in-first-out line of requests waiting for a place (--queue-timeout).
//
// A slot is handed over, not re-raced for: when a slot is given back while requests wait, it
// goes straight to the first in line, so a newcomer never overtakes a waiter and the count in
// flight never goes over the limit.
//
// Thread safety: every member may be called from any thread; one mutex guards the count and the
// line, held only for a few pointer moves. A waiter sleeps on a timer of its own executor; a
// release on another thread wakes it by posting to that executor, never by touching its timer
// from the wrong thread.
//
// Lifetime: the gate must outlive every slot and every acquire() in progress. Call close()
// before the io_contexts of suspended waiters are destroyed.
class inflight_gate {
 public:
  // One place in flight, given back (to the next waiter, if any) when destroyed. Move-only.
  class slot {
   public:
    slot() = default;
    slot(slot&& other) noexcept : gate_(other.gate_) { other.gate_ = nullptr; }
    slot& operator=(slot&& other) noexcept;
    slot(const slot&) = delete;
    slot& operator=(const slot&) = delete;
    ~slot() { reset(); }

    void reset();
    explicit operator bool() const { return gate_ != nullptr; }

   private:
    friend class inflight_gate;
    explicit slot(inflight_gate* gate) : gate_(gate) {}
    inflight_gate* gate_ = nullptr;
  };

  enum class outcome {
    admitted,   // `held` is a slot
    full,       // no slot, and waiting was not allowed (no wait, or the line is full)
    timed_out,  // waited the whole time without a slot coming free
    cancelled,  // the wait was cancelled (the caller's client left, or shutdown)
  };
  struct admission {
    outcome result = outcome::full;
    slot held;
  };

  // limit 0: no limit (everything is admitted at once, and still counted). max_waiters bounds
  // the line; beyond it a request is refused at once rather than queued without end.
  inflight_gate(std::size_t limit, std::size_t max_waiters)
      : limit_(limit), max_waiters_(max_waiters) {}

  // A slot when one is free and nobody waits; never blocks.
  std::optional<slot> try_acquire();

  // A slot at once if one is free and nobody waits. Otherwise, when `wait` is positive and the
  // line has room, waits in line for up to `wait`. Terminal cancellation of the awaiting
  // operation (e.g. the other side of an `||` completing) ends the wait: the waiter leaves the
  // line and gets outcome::cancelled, or admitted if a slot reached it first.
  //
  // Must be awaited on a single-threaded executor (an io_context run by one thread, or a strand).
  net::awaitable<admission> acquire(std::chrono::steady_clock::duration wait);

  // For shutdown: from now on, slots given back are no longer handed to waiters (whose
  // executors may be going away); the waiters still in line stay there until their coroutines
  // end or are destroyed.
  void close();

  std::size_t inflight() const;
  std::size_t waiting() const;
  std::size_t limit() const { return limit_; }

 private:
  struct waiter;
  using line = std::list<std::shared_ptr<waiter>>;

  // Gives one slot back: to the first waiter, or to the free count.
  void release();
  // Settles a waiter whose wait ended; true when a slot had been handed to it (it now owns it).
  bool settle(waiter& w);

  const std::size_t limit_;
  const std::size_t max_waiters_;
  mutable std::mutex mutex_;
  std::size_t inflight_ = 0;  // slots held, including those handed to waiters not yet awake
  line line_;
  bool closed_ = false;
};

}  // namespace glm::proxy
