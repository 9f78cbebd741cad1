#pragma once

#include "balancer/backend_address.hpp"
#include "proxy/core/asio.hpp"

namespace glm::proxy {

// Opens a TCP connection to a backend on `stream`: an IP literal directly, a host name through
// the resolver (every address it gives, in order). Bounded by the deadline the caller set on
// `stream` (expires_after / expires_at), which also covers the resolution.
net::awaitable<error_code> backend_connect(beast::tcp_stream& stream,
                                           const balancer::backend_address& to);

}  // namespace glm::proxy
