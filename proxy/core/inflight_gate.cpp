#include "proxy/core/inflight_gate.hpp"

namespace glm::proxy {

// A request waiting in line. `timer` belongs to the waiter's executor and is only touched there;
// the other members are guarded by the gate's mutex.
struct inflight_gate::waiter {
  explicit waiter(const net::any_io_executor& ex) : timer(ex) {}
  net::steady_timer timer;
  line::iterator place;
  bool queued = false;   // in line_
  bool granted = false;  // a slot was handed to it; it counts in inflight_ already
  bool settled = false;  // its coroutine has taken the outcome
};

inflight_gate::slot& inflight_gate::slot::operator=(slot&& other) noexcept {
  if (this != &other) {
    reset();
    gate_ = other.gate_;
    other.gate_ = nullptr;
  }
  return *this;
}

void inflight_gate::slot::reset() {
  if (gate_ != nullptr) gate_->release();
  gate_ = nullptr;
}

std::optional<inflight_gate::slot> inflight_gate::try_acquire() {
  std::lock_guard lock(mutex_);
  if (limit_ != 0 && (inflight_ >= limit_ || !line_.empty())) return std::nullopt;
  ++inflight_;
  return slot(this);
}

net::awaitable<inflight_gate::admission> inflight_gate::acquire(
    std::chrono::steady_clock::duration wait) {
  // The caller's cancellation must end the wait as a value, not an exception.
  co_await net::this_coro::throw_if_cancelled(false);
  if (auto s = try_acquire()) co_return admission{outcome::admitted, std::move(*s)};

  auto me = std::make_shared<waiter>(co_await net::this_coro::executor);
  {
    std::lock_guard lock(mutex_);
    if (closed_ || wait <= wait.zero() || line_.size() >= max_waiters_) {
      co_return admission{outcome::full, {}};
    }
    // A slot may have come free since try_acquire(); it is still nobody's if the line is empty.
    if (line_.empty() && inflight_ < limit_) {
      ++inflight_;
      co_return admission{outcome::admitted, slot(this)};
    }
    me->place = line_.insert(line_.end(), me);
    me->queued = true;
  }
  // If this frame is destroyed while it waits (its io_context torn down at shutdown), leave the
  // line, and pass on a slot that reached it in the meantime.
  struct leave_on_destroy {
    inflight_gate& gate;
    waiter& w;
    ~leave_on_destroy() {
      if (gate.settle(w)) gate.release();
    }
  } guard{*this, *me};

  auto now = std::chrono::steady_clock::now();
  me->timer.expires_at(wait >= std::chrono::steady_clock::time_point::max() - now
                           ? std::chrono::steady_clock::time_point::max()
                           : now + wait);
  // Ends on the deadline, on a release's wakeup (which cancels the timer), or on the caller's
  // cancellation. Which of them it was is read from the state, not from the error code: a
  // wakeup and a deadline can cross.
  auto [ec] = co_await me->timer.async_wait(use_nothrow);
  if (settle(*me)) co_return admission{outcome::admitted, slot(this)};
  co_return admission{ec == net::error::operation_aborted ? outcome::cancelled : outcome::timed_out,
                      {}};
}

bool inflight_gate::settle(waiter& w) {
  std::lock_guard lock(mutex_);
  if (w.settled) return false;
  w.settled = true;
  if (w.queued) {
    line_.erase(w.place);
    w.queued = false;
  }
  return w.granted;
}

void inflight_gate::release() {
  std::shared_ptr<waiter> next;
  {
    std::lock_guard lock(mutex_);
    if (!closed_ && !line_.empty()) {
      // The slot moves to the first waiter: inflight_ stays as it is.
      next = std::move(line_.front());
      line_.pop_front();
      next->queued = false;
      next->granted = true;
    } else {
      --inflight_;
    }
  }
  if (next) {
    // The waiter's timer may only be touched on its own executor. The handler keeps the waiter
    // alive; if the waiter has already woken for another reason, cancel() finds nothing to do.
    auto ex = next->timer.get_executor();
    net::post(ex, [w = std::move(next)] { w->timer.cancel(); });
  }
}

void inflight_gate::close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
}

std::size_t inflight_gate::inflight() const {
  std::lock_guard lock(mutex_);
  return inflight_;
}

std::size_t inflight_gate::waiting() const {
  std::lock_guard lock(mutex_);
  return line_.size();
}

}  // namespace glm::proxy
