#pragma once

#include <optional>
#include <string_view>

#include "proxy/core/asio.hpp"
#include "proxy/core/refusal_reason.hpp"

namespace glm::proxy {

// What a request handler gives its session (Beast's handle_request returns a response; the
// session writes it). The session writes `response` unless the handler already wrote its answer
// itself (a relayed stream), then logs the access line and counts the answer, and the refusal if
// there is one: no answer can skip either.
struct answer {
  http::response<http::string_body> response;  // sent by the session unless `written`
  bool written = false;
  unsigned status = 0;           // when written: the status sent (499 when the client left first)
  bool keep_connection = false;  // when written: whether the connection can carry another request
  std::optional<refusal_reason> refused;  // answered with an error before any backend was asked

  // An answer for the session to send.
  static answer reply(http::response<http::string_body> res) {
    answer a;
    a.response = std::move(res);
    return a;
  }
  // A refusal: a JSON error in vLLM's shape, counted under `reason`.
  static answer refusal(unsigned status, std::string_view message, refusal_reason reason,
                        bool keep_alive);
  // An answer the handler wrote itself.
  static answer already_written(unsigned status, bool keep_connection,
                                std::optional<refusal_reason> refused = std::nullopt) {
    answer a;
    a.written = true;
    a.status = status;
    a.keep_connection = keep_connection;
    a.refused = refused;
    return a;
  }
};

}  // namespace glm::proxy
