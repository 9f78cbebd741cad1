#include "proxy/core/socket_peek.hpp"

#include <sys/socket.h>

#include <cerrno>

namespace glm::proxy {

peer_state peek_peer(tcp::socket& socket) {
  char byte;
  ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return peer_state::has_bytes;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    return peer_state::quiet;
  }
  return peer_state::closed;  // 0: an orderly close; any other error: as good as gone
}

}  // namespace glm::proxy
