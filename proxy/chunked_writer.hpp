#pragma once

#include <string_view>

#include "proxy/asio.hpp"

namespace glm::proxy {

// Writes a chunked response to a client: the header once, then each piece of the relayed body as
// one chunk straight from the caller's buffer (no copy, no allocation: the chunk-size line is
// formatted into a member array), then the last chunk. Every write re-arms the write timeout.
//
// It remembers whether the bytes sent so far end on an SSE event boundary (a blank line), so that
// an error event appended after an upstream failure is never glued to a half-sent event.
class chunked_writer {
 public:
  chunked_writer(beast::tcp_stream& client, std::chrono::steady_clock::duration write_timeout)
      : client_(client), timeout_(write_timeout) {}

  net::awaitable<error_code> write_header(http::response<http::empty_body>& res);
  net::awaitable<error_code> write_chunk(std::string_view data);
  net::awaitable<error_code> write_last();

  bool header_sent() const { return header_sent_; }
  bool at_event_boundary() const { return tail_ == 2; }
  std::size_t body_bytes() const { return body_bytes_; }

 private:
  beast::tcp_stream& client_;
  std::chrono::steady_clock::duration timeout_;
  char size_line_[24];
  bool header_sent_ = false;
  int tail_ = 2;  // trailing '\n' count of the body so far (CRs ignored), capped at 2
  std::size_t body_bytes_ = 0;
};

}  // namespace glm::proxy
