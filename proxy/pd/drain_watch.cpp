#include "proxy/pd/drain_watch.hpp"

#include <algorithm>
#include <atomic>

namespace glm::proxy {

drain_watch& drain_watch::of(const net::any_io_executor& ex) {
  return net::use_service<drain_watch>(net::query(ex, net::execution::context));
}

namespace {

// The moment the requests are ended, the same for every worker (steady_clock ticks; 0 = no drain
// yet). It is set before the workers hear of it: a request admitted on a worker whose timer is
// not armed yet, or one in the --max-inflight line on worker B taking the slot a request on
// worker A gave back when A's timer fired, must not be served after the drain has run out.
std::atomic<std::chrono::steady_clock::rep> drain_deadline{0};

bool past_drain_deadline() {
  auto at = drain_deadline.load();
  return at != 0 && std::chrono::steady_clock::now().time_since_epoch().count() >= at;
}

}  // namespace

void drain_watch::begin(const std::vector<std::unique_ptr<net::io_context>>& workers,
                        double drain_timeout) {
  // The server stops its workers at its deadline; end the requests a little before it, so their
  // last writes are done by then.
  const double margin = std::min(0.25, drain_timeout / 4);
  auto at = std::chrono::steady_clock::now() + seconds(std::max(0.0, drain_timeout - margin));
  std::chrono::steady_clock::rep unset = 0;
  if (!drain_deadline.compare_exchange_strong(unset, at.time_since_epoch().count())) return;
  for (const auto& worker : workers) {
    net::post(*worker,
              [&io = *worker, at] { net::use_service<drain_watch>(io).expire_at(io, at); });
  }
}

void drain_watch::expire_at(net::io_context& io, std::chrono::steady_clock::time_point at) {
  timer_.emplace(io, at);
  timer_->async_wait([this](const error_code& ec) {
    if (!ec) expire();
  });
}

void drain_watch::expire() {
  expired_ = true;
  // A watcher's callback only flags its request and closes its upstream; the request unwinds
  // (and leaves this list) later, on its own coroutine.
  for (auto& on_expiry : *watchers_) on_expiry();
}

drain_watch::registration drain_watch::watch(std::function<void()> on_expiry) {
  registration r;
  r.list_ = watchers_;
  r.at_ = watchers_->insert(watchers_->end(), std::move(on_expiry));
  // Past the deadline a request admitted late (its worker's timer not yet run) ends at once too.
  if (expired_ || past_drain_deadline()) (*r.at_)();
  return r;
}

drain_watch::registration::registration(registration&& other) noexcept
    : list_(std::move(other.list_)), at_(other.at_) {}

drain_watch::registration::~registration() {
  if (list_) list_->erase(at_);
}

void drain_watch::shutdown() {
  // The timer is destroyed here, not in the destructor: its service may have been created after
  // this one, so the io_context destroys that first, and an io object must not outlive its
  // service (TSan showed the use after free). Every service is still alive during shutdown.
  timer_.reset();
}

}  // namespace glm::proxy
