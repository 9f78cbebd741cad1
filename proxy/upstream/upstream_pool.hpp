#pragma once

#include <chrono>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "balancer/backend_address.hpp"
#include "proxy/core/asio.hpp"

namespace glm::proxy {

// Idle keep-alive connections to the backends, so a request does not pay a TCP connect and
// close per backend call.
//
// One pool per io_context, as an Asio service: each worker thread runs one io_context, so the
// pool is used by one thread only and needs no lock, and its sockets are destroyed with the
// io_context they belong to.
//
// A connection is put back only after a complete response (see upstream_exchange::recycle). An idle
// one is dropped after max_idle, before the backend's own keep-alive ends (uvicorn's, under
// vLLM, is 5 s), and checked for a close from the backend when taken after idling look_after. The
// caller still retries once on a fresh connection when a reused one fails before any response byte:
// the backend may close it at any moment.
class upstream_pool : public net::execution_context::service {
 public:
  using key_type = upstream_pool;
  static inline net::execution_context::id id;

  static constexpr std::chrono::milliseconds max_idle{4000};
  static constexpr std::size_t max_idle_per_backend = 1024;
  // A connection idle for less than this is taken without checking it for a close.
  static constexpr std::chrono::milliseconds look_after{1000};

  explicit upstream_pool(net::execution_context& owner) : service(owner) {}

  // The pool of the io_context behind `ex`.
  static upstream_pool& of(const net::any_io_executor& ex);

  // The most recently used idle connection to `to` that is still open, if any.
  std::optional<tcp::socket> take(const balancer::backend_address& to);
  // Keeps an open connection that has just finished a complete response.
  void put(const balancer::backend_address& to, tcp::socket socket);

  std::size_t idle_count() const;

  // Closes connections idle for max_idle or longer. take() and put() do this as they go; the
  // server also calls it every second, so a quiet backend's connections do not sit half-closed.
  void evict_expired() { sweep(std::chrono::steady_clock::now()); }

  // Calls evict_expired() every second until the io_context stops.
  static net::awaitable<void> evict_periodically();

 private:
  struct idle_connection {
    tcp::socket socket;
    std::chrono::steady_clock::time_point since;
  };
  struct backend {
    std::string host;
    std::uint16_t port = 0;
    std::deque<idle_connection> idle;  // oldest first
  };

  void shutdown() override;
  backend& find(const balancer::backend_address& to);
  // Drops connections idle for longer than max_idle, everywhere, at most every max_idle / 4.
  void sweep(std::chrono::steady_clock::time_point now);

  // A handful: linear search beats hashing. A deque, so growing never moves the idle lists.
  std::deque<backend> backends_;
  std::chrono::steady_clock::time_point last_sweep_{};
};

}  // namespace glm::proxy
