#pragma once

#include "proxy/core/asio.hpp"

namespace glm::proxy {

// Notices that a client whose request has been read completely went away, without reading from
// its socket: the socket becomes readable only when the client closes or resets it, or pipelines
// its next request.
class client_departure {
 public:
  // Completes when the client has left. If the client pipelines bytes instead, it is still there:
  // the wait then lasts until cancelled (use it on one side of an `||`), and the bytes stay in
  // the socket for the next request. When cancelled it completes too: only the first branch of
  // an `||` to complete counts.
  static net::awaitable<void> wait(tcp::socket& socket);
};

}  // namespace glm::proxy
