#include "proxy/core/metaserver_registry.hpp"

namespace glm::proxy {

struct metaserver_registry::entry {
  net::any_io_executor executor;  // the request's; set at creation, then read-only

  // Guarded by `mutex`: touched by callbacks on any worker. `ids` changes only in restart(),
  // which holds the registry's mutex too (unregister() reads it under that one alone).
  std::mutex mutex;
  std::vector<std::string> ids;
  std::chrono::steady_clock::time_point sent_at;
  std::vector<std::optional<protocol::metaserver_callback>> got;
  std::size_t count = 0;
  bool finished = false;
  std::vector<std::shared_ptr<reply>> replies;  // the callbacks waiting for the outcome

  // On `executor` only: the registration's wake-up timer (null once it is gone), and whether the
  // request stopped waiting.
  net::steady_timer* wake = nullptr;
  bool cancelled = false;

  bool complete() const { return count == ids.size(); }
};

metaserver_registry::registration& metaserver_registry::registration::operator=(
    registration&& other) noexcept {
  if (this != &other) {
    finish(outcome::prefill_failed);
    if (entry_) entry_->wake = nullptr;
    owner_ = other.owner_;
    entry_ = std::move(other.entry_);
    wake_ = std::move(other.wake_);
  }
  return *this;
}

metaserver_registry::registration::~registration() {
  finish(outcome::prefill_failed);
  // Handlers posted by callbacks may still run after this; they find no timer.
  if (entry_) entry_->wake = nullptr;
}

net::awaitable<bool> metaserver_registry::registration::wait(
    std::chrono::steady_clock::duration timeout) {
  if (!entry_) co_return false;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    {
      std::lock_guard lock(entry_->mutex);
      if (entry_->complete()) co_return true;
    }
    if (entry_->cancelled || std::chrono::steady_clock::now() >= deadline) co_return false;
    // The last callback posts a cancel of this timer to this executor, which runs it only after
    // this coroutine suspends: it cannot be lost between the check above and the wait. A wake-up
    // whose set a restart() has emptied since is waited out again.
    wake_->expires_at(deadline);
    co_await wake_->async_wait(use_nothrow);
  }
}

void metaserver_registry::registration::cancel() {
  if (!entry_) return;
  entry_->cancelled = true;
  wake_->cancel();
}

std::vector<protocol::metaserver_callback> metaserver_registry::registration::take_callbacks() {
  std::vector<protocol::metaserver_callback> out;
  if (!entry_) return out;
  std::lock_guard lock(entry_->mutex);
  out.reserve(entry_->got.size());
  for (auto& c : entry_->got) {
    if (c) out.push_back(std::move(*c));
  }
  return out;
}

void metaserver_registry::registration::finish(outcome how) {
  if (!entry_) return;
  std::vector<std::shared_ptr<reply>> replies;
  {
    std::lock_guard lock(entry_->mutex);
    if (entry_->finished) return;
    entry_->finished = true;
    replies = std::move(entry_->replies);
  }
  owner_->unregister(*entry_);
  if (owner_->closed_) return;  // the callbacks' event loops are stopped, or gone
  answer(std::move(replies), how);
}

bool metaserver_registry::registration::restart(std::vector<std::string> ids) {
  if (!entry_) return false;
  std::vector<std::shared_ptr<reply>> stale;
  {
    std::lock_guard registry_lock(owner_->mutex_);
    std::lock_guard lock(entry_->mutex);
    if (entry_->finished) return false;
    for (const auto& id : ids) {
      if (owner_->by_id_.count(id) != 0) return false;
    }
    for (const auto& id : entry_->ids) owner_->by_id_.erase(id);
    for (const auto& id : ids) owner_->by_id_.emplace(id, entry_);
    entry_->ids = std::move(ids);
    entry_->got.assign(entry_->ids.size(), std::nullopt);
    entry_->count = 0;
    entry_->sent_at = std::chrono::steady_clock::now();
    stale = std::move(entry_->replies);
    entry_->replies.clear();
  }
  if (!owner_->closed_) answer(std::move(stale), outcome::prefill_failed);
  return true;
}

void metaserver_registry::answer(std::vector<std::shared_ptr<reply>> replies, outcome how) {
  for (auto& r : replies) {
    net::post(r->executor, [r, how] {
      r->answer = how;
      if (r->timer != nullptr) r->timer->cancel();
    });
  }
}

metaserver_registry::registration metaserver_registry::expect(
    std::vector<std::string> ids, net::any_io_executor request_executor) {
  auto e = std::make_shared<entry>();
  e->executor = request_executor;
  e->ids = std::move(ids);
  e->got.resize(e->ids.size());
  e->sent_at = std::chrono::steady_clock::now();
  registration r;
  {
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < e->ids.size(); ++i) {
      if (!by_id_.emplace(e->ids[i], e).second) {
        for (std::size_t j = 0; j < i; ++j) by_id_.erase(e->ids[j]);
        return r;
      }
    }
  }
  r.owner_ = this;
  r.entry_ = std::move(e);
  r.wake_ = std::make_unique<net::steady_timer>(request_executor);
  r.entry_->wake = r.wake_.get();
  return r;
}

metaserver_registry::delivery metaserver_registry::deliver(protocol::metaserver_callback callback,
                                                           net::any_io_executor callback_executor) {
  delivery d;
  std::shared_ptr<entry> e;
  {
    std::lock_guard lock(mutex_);
    auto it = by_id_.find(callback.request_id);
    if (it == by_id_.end()) return d;  // unknown
    e = it->second;
  }
  bool complete = false;
  {
    std::lock_guard lock(e->mutex);
    if (e->finished) return d;  // it finished since the lookup: unknown from now on
    std::size_t i = 0;
    while (i < e->ids.size() && e->ids[i] != callback.request_id) ++i;
    if (i == e->ids.size()) return d;  // a restart() since the lookup: unknown from now on
    if (e->got[i]) {
      d.how = delivery::result::duplicate;
      return d;
    }
    e->got[i] = std::move(callback);
    ++e->count;
    d.how = delivery::result::accepted;
    d.answer = std::make_shared<reply>();
    d.answer->executor = std::move(callback_executor);
    d.waited = std::chrono::steady_clock::now() - e->sent_at;
    e->replies.push_back(d.answer);
    complete = e->complete();
  }
  if (complete) {
    net::post(e->executor, [e] {
      if (e->wake != nullptr) e->wake->cancel();
    });
  }
  return d;
}

net::awaitable<metaserver_registry::outcome> metaserver_registry::answer_of(
    std::shared_ptr<reply> answer) {
  // Posted answers run on this executor, so the check and the wait cannot miss one.
  if (!answer->answer) {
    net::steady_timer timer(answer->executor, net::steady_timer::time_point::max());
    answer->timer = &timer;
    co_await timer.async_wait(use_nothrow);
    answer->timer = nullptr;
  }
  // No answer only when this wait itself was cancelled: the proxy is going away.
  co_return answer->answer.value_or(outcome::prefill_failed);
}

std::size_t metaserver_registry::registered() const {
  std::lock_guard lock(mutex_);
  return by_id_.size();
}

void metaserver_registry::unregister(const entry& e) {
  std::lock_guard lock(mutex_);
  for (const auto& id : e.ids) {
    auto it = by_id_.find(id);
    if (it != by_id_.end() && it->second.get() == &e) by_id_.erase(it);
  }
}

}  // namespace glm::proxy
