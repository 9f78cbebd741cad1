#include "proxy/pd/drain_watch.hpp"

#include <algorithm>
#include <csignal>

namespace glm::proxy {

drain_watch& drain_watch::of(const net::any_io_executor& ex, double drain_timeout) {
  auto& watch = net::use_service<drain_watch>(net::query(ex, net::execution::context));
  if (!watch.signals_) watch.arm(ex, drain_timeout);
  return watch;
}

void drain_watch::arm(const net::any_io_executor& ex, double drain_timeout) {
  signals_.emplace(ex, SIGINT, SIGTERM);
  timer_.emplace(ex);
  // The server stops its workers at its deadline; end the requests a little before it, so their
  // last writes are done by then.
  const double margin = std::min(0.25, drain_timeout / 4);
  signals_->async_wait([this, drain_timeout, margin](const error_code& ec, int) {
    if (ec) return;
    timer_->expires_after(seconds(std::max(0.0, drain_timeout - margin)));
    timer_->async_wait([this](const error_code& tec) {
      if (!tec) expire();
    });
  });
}

void drain_watch::expire() {
  expired_ = true;
  // A watcher's callback only flags its request and closes its upstream; the request unwinds
  // (and leaves this list) later, on its own coroutine.
  for (auto& on_expiry : watchers_) on_expiry();
}

drain_watch::registration drain_watch::watch(std::function<void()> on_expiry) {
  registration r;
  r.watch_ = this;
  r.at_ = watchers_.insert(watchers_.end(), std::move(on_expiry));
  if (expired_) (*r.at_)();
  return r;
}

drain_watch::registration::registration(registration&& other) noexcept
    : watch_(other.watch_), at_(other.at_) {
  other.watch_ = nullptr;
}

drain_watch::registration::~registration() {
  if (watch_ != nullptr) watch_->watchers_.erase(at_);
}

void drain_watch::shutdown() {
  // The signal_set and the timer are destroyed here, not in the destructor: their own services
  // were created after this one, so the io_context destroys those first, and an io object must
  // not outlive its service (TSan showed the use after free). Every service is still alive
  // during shutdown.
  signals_.reset();
  timer_.reset();
  watchers_.clear();
}

}  // namespace glm::proxy
