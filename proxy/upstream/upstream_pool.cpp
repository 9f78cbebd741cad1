#include "proxy/upstream/upstream_pool.hpp"

#include "proxy/core/socket_peek.hpp"

namespace glm::proxy {

upstream_pool& upstream_pool::of(const net::any_io_executor& ex) {
  return net::use_service<upstream_pool>(net::query(ex, net::execution::context));
}

upstream_pool::backend& upstream_pool::find(const balancer::backend_address& to) {
  for (backend& b : backends_) {
    if (b.port == to.port && b.host == to.host) return b;
  }
  backends_.push_back(backend{to.host, to.port, {}});
  return backends_.back();
}

std::optional<tcp::socket> upstream_pool::take(const balancer::backend_address& to) {
  auto now = std::chrono::steady_clock::now();
  sweep(now);
  backend& b = find(to);
  while (!b.idle.empty()) {
    idle_connection c = std::move(b.idle.back());
    b.idle.pop_back();
    if (now - c.since >= max_idle) continue;
    // A backend that closed the connection (FIN) or sent something unasked cannot take a request.
    // Under load connections come back within milliseconds and a look costs a syscall per backend
    // call, so only a connection that idled for a while is looked at; a close in the moment
    // between is caught by the caller's retry on a fresh connection.
    if (now - c.since < look_after || peek_peer(c.socket) == peer_state::quiet) {
      return std::move(c.socket);
    }
  }
  return std::nullopt;
}

void upstream_pool::put(const balancer::backend_address& to, tcp::socket socket) {
  auto now = std::chrono::steady_clock::now();
  sweep(now);
  backend& b = find(to);
  if (b.idle.size() >= max_idle_per_backend) b.idle.pop_front();  // closes the oldest
  b.idle.push_back({std::move(socket), now});
}

std::size_t upstream_pool::idle_count() const {
  std::size_t n = 0;
  for (const backend& b : backends_) n += b.idle.size();
  return n;
}

void upstream_pool::sweep(std::chrono::steady_clock::time_point now) {
  if (now - last_sweep_ < max_idle / 4) return;
  last_sweep_ = now;
  for (backend& b : backends_) {
    while (!b.idle.empty() && now - b.idle.front().since >= max_idle) b.idle.pop_front();
  }
}

net::awaitable<void> upstream_pool::evict_periodically() {
  auto ex = co_await net::this_coro::executor;
  upstream_pool& pool = of(ex);
  net::steady_timer tick(ex);
  for (;;) {
    tick.expires_after(std::chrono::seconds(1));
    auto [ec] = co_await tick.async_wait(use_nothrow);
    if (ec) co_return;
    pool.evict_expired();
  }
}

void upstream_pool::shutdown() {
  backends_.clear();
}

}  // namespace glm::proxy
