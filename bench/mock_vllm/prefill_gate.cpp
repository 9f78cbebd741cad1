#include "bench/mock_vllm/prefill_gate.hpp"

#include <algorithm>
#include <variant>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace glm::mock {

namespace net = boost::asio;
using namespace net::experimental::awaitable_operators;

net::awaitable<prefill_gate::slot> prefill_gate::acquire(net::awaitable<void> give_up) {
  if (limit_ <= 0) {
    ++running_;
    co_return slot(this);
  }
  auto me = std::make_shared<waiter>(co_await net::this_coro::executor);
  {
    std::lock_guard lock(mutex_);
    if (free_ > 0 && queue_.empty()) {
      --free_;
      ++running_;
      co_return slot(this);
    }
    queue_.push_back(me);
    ++waiting_;
  }
  // release() wakes us by moving the timer's expiry to the past, on our strand. Unlike cancel(),
  // that also works if it runs before the wait below has started (operator|| starts its
  // operations through a post).
  const auto winner =
      co_await (me->timer.async_wait(net::as_tuple(net::use_awaitable)) || std::move(give_up));
  bool granted = false;
  {
    std::lock_guard lock(mutex_);
    granted = me->granted;
    if (!granted) {
      // The peer left while we waited: leave the line.
      if (const auto it = std::find(queue_.begin(), queue_.end(), me); it != queue_.end()) {
        queue_.erase(it);
        --waiting_;
      }
    }
  }
  if (!granted) co_return slot();
  // release() already took us off the queue and the waiting count.
  ++running_;
  slot got(this);
  // Granted just as the peer left: pass the slot on at once (got's destructor).
  if (winner.index() == 1) co_return slot();
  co_return got;
}

void prefill_gate::release() {
  --running_;
  if (limit_ <= 0) return;
  std::lock_guard lock(mutex_);
  if (closed_) return;
  if (queue_.empty()) {
    ++free_;
    return;
  }
  std::shared_ptr<waiter> next = std::move(queue_.front());
  queue_.pop_front();
  --waiting_;
  next->granted = true;
  net::post(next->timer.get_executor(),
            [next] { next->timer.expires_at(net::steady_timer::time_point::min()); });
}

void prefill_gate::close() {
  std::deque<std::shared_ptr<waiter>> dropped;
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
    dropped.swap(queue_);
  }
  waiting_ = 0;
}

}  // namespace glm::mock
