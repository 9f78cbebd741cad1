#pragma once

#include "proxy/core/asio.hpp"
#include "proxy/core/proxy_context.hpp"
#include "proxy/front/connection_gate.hpp"

namespace glm::proxy {

// Turns away a connection accepted over --max-connections: a short 503 JSON error with
// "Retry-After: 1" and "Connection: close", then a close.
//
// The answer is written at once, before the request is read. Reading the request header first
// would let a client that connects and says nothing hold the descriptor for the whole header
// timeout, which is exactly the load the limit exists to shed; the answer does not depend on the
// request anyway. HTTP/1.1 clients read an answer that arrives before their request is sent (it
// waits in their receive buffer). What would lose it is a TCP reset: closing a socket whose
// receive buffer holds the client's unread request makes the kernel send RST, and a client can
// then see "connection reset" instead of the 503. So the close lingers: shut down our sending
// side, drain what the client sends for up to a second, then close.
//
// Lingering costs one descriptor for up to a second per refused connection. `lingering` bounds
// how many may linger at once; beyond it, a refused connection is closed at once (the client sees
// a reset or an empty reply, and the refusal is still counted).
class connection_refusal {
 public:
  // Runs on the socket's executor. `lingering` must outlive the coroutine.
  static net::awaitable<void> serve(proxy_context& ctx, tcp::socket socket,
                                    connection_gate& lingering);
};

}  // namespace glm::proxy
