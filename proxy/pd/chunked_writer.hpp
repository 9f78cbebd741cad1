#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "proxy/core/asio.hpp"

namespace glm::proxy {

// Writes a chunked response to a client: the header once, then each piece of the relayed body as
// one chunk (or, for an HTTP/1.0 client, as it is) straight from the caller's buffer (no copy, no
// allocation: the chunk-size line is formatted into a member array), then the last chunk. A write
// the socket takes at once completes without waiting; one that has to wait re-arms the write
// timeout.
//
// The header is not written on its own: write_header() formats it and the next write (the first
// chunk, the last chunk, or an error event) carries it, so a stream costs one write less. From
// write_header() on the response counts as begun (header_sent()): what follows is a stream.
//
// It remembers whether the bytes sent so far end on an SSE event boundary (a blank line), so that
// an error event appended after an upstream failure is never glued to a half-sent event.
class chunked_writer {
 public:
  chunked_writer(beast::tcp_stream& client, std::chrono::steady_clock::duration write_timeout)
      : client_(client), timeout_(write_timeout) {}

  net::awaitable<error_code> write_header(http::response<http::empty_body>& res);
  net::awaitable<error_code> write_chunk(std::string_view data);
  // One chunk made of several pieces, sent with one gather write.
  net::awaitable<error_code> write_chunk(const std::vector<std::string_view>& parts) {
    return write_chunk(parts, {}, false);
  }
  // One chunk of `parts` then `tail`; with `last`, the last chunk (the end of the body) goes in
  // the same write.
  net::awaitable<error_code> write_chunk(const std::vector<std::string_view>& parts,
                                         std::string_view tail, bool last);
  net::awaitable<error_code> write_last();

  // For an HTTP/1.0 client, which cannot read chunked encoding (RFC 9112 6.1): the header says
  // Connection: close, pieces go out unframed and write_last() writes nothing; the body ends when
  // the caller closes the connection. Call before write_header().
  void set_unframed() { unframed_ = true; }

  bool header_sent() const { return header_sent_; }
  bool at_event_boundary() const { return tail_ == 2; }

 private:
  beast::tcp_stream& client_;
  std::chrono::steady_clock::duration timeout_;
  void note_tail(std::string_view data);
  // Frames gather_ (the chunk's pieces, `total` bytes) as one chunk, followed by the last chunk
  // with `last`, and writes it.
  net::awaitable<error_code> write_gathered(std::size_t total, bool last = false);
  // Sends gather_ as it is: at once when the socket takes it all, else under the write timeout.
  net::awaitable<error_code> send_gathered();

  std::string header_;           // formatted by write_header(), sent by the next write
  bool header_pending_ = false;  // header_ has not been written yet
  char size_line_[24];
  std::vector<net::const_buffer> gather_;  // reused: no allocation per chunk once warm
  bool header_sent_ = false;
  bool unframed_ = false;
  int tail_ = 2;  // trailing '\n' count of the body so far (CRs ignored), capped at 2
};

}  // namespace glm::proxy
