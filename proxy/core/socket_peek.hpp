#pragma once

#include "proxy/core/asio.hpp"

namespace glm::proxy {

// What a connected socket's peer has done, seen without consuming anything: one non-blocking
// MSG_PEEK. A client whose request has been read completely, or a pooled backend connection,
// should be `quiet`; `closed` covers a FIN, a reset and any socket error.
enum class peer_state { quiet, has_bytes, closed };

peer_state peek_peer(tcp::socket& socket);

}  // namespace glm::proxy
