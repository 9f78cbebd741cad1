#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "proxy/core/asio.hpp"
#include "proxy/pd/chunked_writer.hpp"

namespace glm::proxy {

// Writes a completion request's answer to its client, whichever form it takes: one JSON answer,
// or an SSE stream (header, chunks, last chunk) that a failure ends with an error event. It keeps
// the two facts the session needs afterwards, in one place: the status sent and whether the
// connection can carry another request (the client asked for keep-alive, every write succeeded,
// and the body's end is known).
//
// Every answer carries the request's X-Request-Id. Not thread-safe; lives on the request's frame.
class answer_writer {
 public:
  answer_writer(beast::tcp_stream& client, std::string_view request_id, bool keep_alive,
                bool http10, std::chrono::steady_clock::duration write_timeout);

  // A complete answer. Before the stream has begun only; see error().
  net::awaitable<void> send(http::response<http::string_body> res);
  // An error: `body` (a JSON object) with `status`, or a JSON error made of `message` when `body`
  // is empty; once the stream has begun, an SSE error event with `message` ends it instead.
  net::awaitable<void> error(unsigned status, std::string body, std::string_view message);

  // The SSE header (200). False when the client could not take it.
  net::awaitable<bool> start_stream();
  // One chunk of the stream. False when the client could not take it (it is then gone).
  net::awaitable<bool> chunk(const std::vector<std::string_view>& parts);
  // Ends the stream: the unfinished `tail` of the decoder's last event, then the last chunk.
  net::awaitable<void> finish_stream(std::string_view tail);
  // The stream's last bytes and its end in one write: `parts`, the unfinished `tail`, the last
  // chunk. False when the client could not take them.
  net::awaitable<bool> finish_stream(const std::vector<std::string_view>& parts,
                                     std::string_view tail);
  // Ends a begun stream with an SSE error event and [DONE], so clients see a clear error and not
  // a silent cut; before the stream, a 502 JSON error.
  net::awaitable<void> end_with_error(std::string_view message);
  // The client is gone, or stopped reading: nothing more is written and the connection closes.
  void abandon() { keep_connection_ = false; }

  bool stream_started() const { return writer_.header_sent(); }
  unsigned status() const { return status_; }
  bool keeps_connection() const { return keep_connection_; }

 private:
  beast::tcp_stream& client_;
  std::string request_id_;
  bool keep_alive_;
  bool http10_;
  std::chrono::steady_clock::duration write_timeout_;
  chunked_writer writer_;
  unsigned status_ = 0;
  bool keep_connection_ = false;
};

}  // namespace glm::proxy
