#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "balancer/backend_address.hpp"
#include "proxy/core/asio.hpp"

namespace glm::proxy {

// One HTTP/1.1 request to a vLLM backend and the reading of its answer, on a fresh connection or
// on a keep-alive one from the worker's upstream_pool. Every operation takes its own timeout,
// re-armed per operation, so a long stream never dies at a whole-request deadline while a stalled
// one does.
//
// Closing the exchange (close(), or destroying it without recycle()) closes the TCP connection:
// that is how vLLM learns that the client left and frees the sequence's KV cache. Not
// thread-safe; one coroutine owns it. It must only be used from its executor.
class upstream_exchange {
 public:
  explicit upstream_exchange(net::any_io_executor ex) : stream_(std::move(ex)) {}

  enum class connection { fresh, pooled };

  // With `pooled`, takes an idle keep-alive connection to `to` if the pool has one; otherwise
  // resolves (IP literals skip the resolver) and connects. Starts a new exchange: the answer of
  // the previous one, if any, is forgotten.
  net::awaitable<error_code> connect(const balancer::backend_address& to,
                                     std::chrono::steady_clock::duration timeout,
                                     connection how = connection::fresh);
  // Whether connect() took a pooled connection.
  bool reused() const { return reused_; }
  // Whether any byte of an answer arrived. A reused connection that failed without one was closed
  // by the backend before it read the request, so the request can safely go again.
  bool answer_started() const { return parser_->got_some() || buffer_.size() > 0; }
  // Whether the answer has been read to its end (read_some() would return 0).
  bool answer_complete() const { return parser_->is_done(); }

  // The request type: the body is a view, so a retry re-sends the same bytes without copying them.
  using request = http::request<http::span_body<const char>>;

  // Sends a request; the connection stays open for the answer.
  net::awaitable<error_code> send(request& req, std::chrono::steady_clock::duration timeout);

  // A JSON POST whose body is sent as pieces in one gather write, with no copy into one buffer.
  // The views must stay valid until the send completes.
  struct post {
    std::string_view target;
    std::string_view host;
    std::string_view request_id;
    std::string_view bearer;  // "Authorization: Bearer <bearer>" when not empty
  };
  net::awaitable<error_code> send(const post& head, const std::vector<std::string_view>& body,
                                  std::chrono::steady_clock::duration timeout);

  // Reads the answer's status line and headers. Body bytes read with them stay buffered.
  net::awaitable<error_code> read_header(std::chrono::steady_clock::duration timeout);

  // Reads the rest of the body into `out`, up to `limit` bytes (http::error::body_limit past it),
  // all of it before `deadline`.
  net::awaitable<error_code> read_body(std::string& out, std::size_t limit,
                                       std::chrono::steady_clock::time_point deadline);

  // Reads the next piece of the body into [data, data+size). Returns the bytes read; 0 with no
  // error only when the body is complete. `idle` bounds this one read. Every body byte already
  // received is returned (up to `size`), across HTTP chunk boundaries: one socket read that
  // brought several chunks yields them in one call.
  net::awaitable<std::pair<error_code, std::size_t>> read_some(
      char* data, std::size_t size, std::chrono::steady_clock::duration idle);

  unsigned status() const { return parser_->get().result_int(); }

  // The read of the answer's header takes up to first_read_bytes; a paced stream's reads then
  // take small_read_bytes until one comes back full.
  static constexpr std::size_t first_read_bytes = 4096;
  static constexpr std::size_t small_read_bytes = 512;

  // Gives the connection to the worker's pool if the answer was read completely and the backend
  // keeps it open; otherwise closes it. The exchange is done either way.
  void recycle(const balancer::backend_address& to);

  // Closes the connection at once; any pending operation completes with an error.
  void close();

 private:
  beast::tcp_stream stream_;
  bool reused_ = false;
  // Holds only what a single read brought in past the headers: bounded by Beast's read size.
  beast::flat_buffer buffer_{16 * 1024};
  std::optional<http::response_parser<http::buffer_body>> parser_{std::in_place};
  bool wide_reads_ = false;  // read_some() reads as much as its caller takes, not 512 bytes
  std::string head_;         // the request head built by send(post)
  std::vector<net::const_buffer> gather_;  // head_ and the body pieces
};

}  // namespace glm::proxy
