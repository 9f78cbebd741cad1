#pragma once

#include <chrono>
#include <cstddef>

#include "proxy/core/asio.hpp"

namespace glm::proxy {

// Makes a --reuse-port listener the one that gets the port's new connections, so the glm-proxy
// that listened before it can drain and exit without refusing anyone.
//
// Why: with SO_REUSEPORT the kernel spreads new connections over every listener of the port by a
// hash of the client's address. When one of them closes (an old glm-proxy after SIGTERM), the
// connections waiting in its accept queue and the handshakes under way to it are reset, unless
// the sysctl net.ipv4.tcp_migrate_req is 1 (it is 0 by default). So the new process takes the
// whole group before the old one is told to stop: it attaches a one-instruction classic BPF
// program, "return my index", to the group (SO_ATTACH_REUSEPORT_CBPF; no privilege needed). The
// kernel keeps no public record of a socket's index, so it is found by probing: for k = 0, 1, ...
// the program "return k" is attached and a loopback connection is made to the port; the listener
// whose accept queue (TCP_INFO's tcpi_unacked on a listening socket) grows is socket k. Other
// listeners never see their queue grow meanwhile, since "return k" sends every connection to k;
// probes that reach another process are connections that close without a request.
//
// When the old process closes its socket, the kernel moves the group's last socket into the
// freed slot and the program's index falls out of range; the kernel then goes back to hashing,
// over the sockets that remain. With the usual two processes, that is the new one alone.
class reuse_port_steering {
 public:
  struct result {
    error_code ec;          // set when the group could not be steered (it is left hashing)
    std::size_t index = 0;  // this listener's index in the group: the listeners found before it
  };

  // Steers `acceptor`'s group to it. The acceptor must be open, bound with SO_REUSEPORT set and
  // listening, and nothing may accept from it yet: the probe is recognised by its queue growing.
  // Blocks for up to about (index + 1) * `settle`. Not thread-safe; call before serving.
  static result take_over(tcp::acceptor& acceptor,
                          std::chrono::milliseconds settle = std::chrono::milliseconds(200));
};

}  // namespace glm::proxy
