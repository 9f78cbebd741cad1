#pragma once

#include "balancer/balancer.hpp"
#include "proxy/core/asio.hpp"

namespace glm::proxy {

// Who may call /v1/metaserver: the decoders the balancer knows now (the configured ones and those
// added at run time, isolated ones included: they still finish their requests), and loopback. The
// endpoint carries no token (decoders do not have the clients' API key), so the peer's address is
// what keeps others from answering for a decoder: a forged callback could point a prefiller's KV
// push at any host.
//
// A decoder given as an IP literal is compared at once; one given by host name is resolved only
// when no literal matched, with the caller's executor (no blocking resolver on the event loop).
// Stateless; call from any worker.
class decoder_peers {
 public:
  static net::awaitable<bool> admits(const balancer::balancer& lb, net::ip::address peer);
};

}  // namespace glm::proxy
