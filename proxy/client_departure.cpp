#include "proxy/client_departure.hpp"

#include <sys/socket.h>

#include <cerrno>

namespace glm::proxy {

net::awaitable<void> client_departure::wait(tcp::socket& socket) {
  co_await net::this_coro::throw_if_cancelled(false);
  auto [ec] = co_await socket.async_wait(tcp::socket::wait_read, use_nothrow);
  // Cancelled (the other branch of the caller's `||` finished first; this result is ignored), or
  // the socket itself failed, which means the client is as good as gone.
  if (ec) co_return;
  char byte;
  ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  bool gone = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
  if (gone) co_return;
  // Pipelined bytes: still there. Wait until cancelled.
  net::steady_timer forever(co_await net::this_coro::executor,
                            std::chrono::steady_clock::time_point::max());
  co_await forever.async_wait(use_nothrow);
}

}  // namespace glm::proxy
