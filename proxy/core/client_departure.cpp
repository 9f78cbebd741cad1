#include "proxy/core/client_departure.hpp"

#include "proxy/core/socket_peek.hpp"

namespace glm::proxy {

net::awaitable<void> client_departure::wait(tcp::socket& socket) {
  co_await net::this_coro::throw_if_cancelled(false);
  auto [ec] = co_await socket.async_wait(tcp::socket::wait_read, use_nothrow);
  // Cancelled (the other branch of the caller's `||` finished first; this result is ignored), or
  // the socket itself failed, which means the client is as good as gone.
  if (ec || peek_peer(socket) == peer_state::closed) co_return;
  // Pipelined bytes: still there. Wait until cancelled.
  net::steady_timer forever(co_await net::this_coro::executor,
                            std::chrono::steady_clock::time_point::max());
  co_await forever.async_wait(use_nothrow);
}

}  // namespace glm::proxy
