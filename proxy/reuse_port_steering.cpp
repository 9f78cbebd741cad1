#include "proxy/reuse_port_steering.hpp"

#include <fcntl.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <thread>

namespace glm::proxy {
namespace {

// Groups larger than this are not searched: the program is removed and the kernel hashes.
constexpr std::size_t max_group = 64;

error_code last_error() {
  return {errno, boost::system::system_category()};
}

error_code attach_return(int listener, std::uint32_t k) {
  sock_filter code[] = {{BPF_RET | BPF_K, 0, 0, k}};
  sock_fprog prog{1, code};
  if (::setsockopt(listener, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) != 0) {
    return last_error();
  }
  return {};
}

// Connections waiting in a listening socket's accept queue.
std::optional<std::uint32_t> queue_length(int listener) {
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(listener, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return std::nullopt;
  return info.tcpi_unacked;
}

// A loopback-or-local connection to the listener's port, made within `timeout`; -1 on failure.
// Closed by the caller with a reset, so whoever got it frees it at once.
int connect_probe(const tcp::endpoint& to, std::chrono::milliseconds timeout) {
  int fd = ::socket(to.protocol().family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::connect(fd, to.data(), static_cast<socklen_t>(to.size())) != 0 && errno != EINPROGRESS) {
    ::close(fd);
    return -1;
  }
  pollfd p{fd, POLLOUT, 0};
  int err = 0;
  socklen_t len = sizeof err;
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1 ||
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void close_with_reset(int fd) {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
}

}  // namespace

reuse_port_steering::result reuse_port_steering::take_over(tcp::acceptor& acceptor,
                                                           std::chrono::milliseconds settle) {
  result r;
  int listener = acceptor.native_handle();
  tcp::endpoint to = acceptor.local_endpoint(r.ec);
  if (r.ec) return r;
  // A wildcard listener is reached through loopback.
  if (to.address().is_unspecified()) {
    to.address(to.address().is_v6() ? net::ip::address(net::ip::address_v6::loopback())
                                    : net::ip::address(net::ip::address_v4::loopback()));
  }
  for (std::uint32_t k = 0; k < max_group; ++k) {
    if ((r.ec = attach_return(listener, k))) return r;
    // Handshakes that the previous program (or the hash) sent here before this one was attached
    // may still land in the queue: let them, then measure.
    std::this_thread::sleep_for(std::chrono::milliseconds(k == 0 ? 20 : 5));
    auto before = queue_length(listener);
    if (!before) {
      r.ec = last_error();
      break;
    }
    int probe = connect_probe(to, settle);
    bool mine = false;
    if (probe >= 0) {
      // The child joins the queue when the handshake's last ACK is processed, just after
      // connect() returns on loopback; wait for it a little.
      auto deadline = std::chrono::steady_clock::now() + settle;
      while (!mine && std::chrono::steady_clock::now() < deadline) {
        auto now = queue_length(listener);
        mine = now && *now > *before;
        if (!mine) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      close_with_reset(probe);
    }
    if (mine) {
      r.index = k;
      return r;
    }
  }
  // Not found (a group this large, or probes that cannot connect): leave the kernel hashing.
  int dummy = 0;
  ::setsockopt(listener, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &dummy, sizeof dummy);
  if (!r.ec) r.ec = net::error::not_found;
  return r;
}

}  // namespace glm::proxy
