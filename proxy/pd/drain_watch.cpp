#include "proxy/pd/drain_watch.hpp"

#include <algorithm>
#include <atomic>
#include <csignal>

namespace glm::proxy {

drain_watch& drain_watch::of(const net::any_io_executor& ex, double drain_timeout) {
  auto& watch = net::use_service<drain_watch>(net::query(ex, net::execution::context));
  if (!watch.signals_) watch.arm(ex, drain_timeout);
  return watch;
}

namespace {

// The moment the requests are ended, the same for every worker (steady_clock ticks; 0 = no signal
// yet). With one moment per worker, a request in the --max-inflight line on worker B could take
// the slot a request on worker A gave back when A's timer fired, before B's timer fired, and be
// served after the drain had run out.
std::atomic<std::chrono::steady_clock::rep> drain_deadline{0};

std::chrono::steady_clock::time_point deadline_from(double drain_timeout, double margin) {
  auto candidate =
      std::chrono::steady_clock::now() + seconds(std::max(0.0, drain_timeout - margin));
  std::chrono::steady_clock::rep unset = 0;
  drain_deadline.compare_exchange_strong(unset, candidate.time_since_epoch().count());
  return std::chrono::steady_clock::time_point(
      std::chrono::steady_clock::duration(drain_deadline.load()));
}

bool past_drain_deadline() {
  auto at = drain_deadline.load();
  return at != 0 && std::chrono::steady_clock::now().time_since_epoch().count() >= at;
}

}  // namespace

void drain_watch::arm(const net::any_io_executor& ex, double drain_timeout) {
  signals_.emplace(ex, SIGINT, SIGTERM);
  timer_.emplace(ex);
  // The server stops its workers at its deadline; end the requests a little before it, so their
  // last writes are done by then.
  const double margin = std::min(0.25, drain_timeout / 4);
  signals_->async_wait([this, drain_timeout, margin](const error_code& ec, int) {
    if (ec) return;
    timer_->expires_at(deadline_from(drain_timeout, margin));
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
  // Past the deadline a request admitted late (its worker's timer not yet run) ends at once too.
  if (expired_ || past_drain_deadline()) (*r.at_)();
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
