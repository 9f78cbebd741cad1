#pragma once

#include <optional>

#include "proxy/core/access_record.hpp"
#include "proxy/core/answer.hpp"
#include "proxy/core/asio.hpp"
#include "proxy/core/inflight_gate.hpp"
#include "proxy/core/proxy_context.hpp"

namespace glm::proxy {

// A completion request's place under --max-inflight: at once when one is free, else a wait in
// line of up to --queue-timeout, while watching for the client to leave.
class admission {
 public:
  struct result {
    inflight_gate::slot place;  // held until the answer has ended; empty when refused
    answer refusal;             // when there is no place: the 503, or (client gone) nothing
  };

  // `client` is the request's connection, watched while waiting; `record` learns a departure.
  static net::awaitable<result> admit(proxy_context& ctx, tcp::socket& client, bool keep_alive,
                                      access_record& record);
};

}  // namespace glm::proxy
