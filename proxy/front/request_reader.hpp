#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "proxy/config.hpp"
#include "proxy/core/answer.hpp"
#include "proxy/core/asio.hpp"

namespace glm::proxy {

// What reading one request from a client connection gave: a request, a refusal to answer before
// closing the connection, or nothing (the client closed, reset or was too slow: no answer).
struct read_result {
  enum class kind { request, refusal, closed };
  kind what = kind::closed;
  // kind::request: the whole request, its target in origin form. kind::refusal: the header, when
  // it was read (has_header), so the refusal can be logged with its method, path and id.
  http::request<http::string_body> request;
  bool has_header = false;
  answer refusal;  // kind::refusal: a JSON error, counted with its reason, then the close
};

// Reads requests from one client connection, keeping its bounds: the header within
// --header-timeout (a kept-alive connection's next request may first idle for idle_timeout),
// each body read within --header-timeout, headers up to max_header_bytes, bodies up to
// --max-body-bytes. It refuses what HTTP/1.1 says must not be served: bytes that are not HTTP,
// conflicting lengths, transfer codings other than a final chunked (RFC 9112 6.1).
//
// Not thread-safe; one per connection, on the session's frame. `stream` outlives it.
class request_reader {
 public:
  request_reader(const config& cfg, beast::tcp_stream& stream);

  // `first`: the connection's first request, which must come within --header-timeout.
  net::awaitable<read_result> read(bool first);

  // The first read of a request takes up to this much.
  static constexpr std::size_t first_read_bytes = 4096;

 private:
  // The refusal (or closed) a read error calls for.
  read_result refusal_for(const error_code& ec, bool in_body) const;
  // A transfer coding refusal, when the header calls for one.
  std::optional<answer> check_transfer_encoding(const http::request_parser<http::string_body>& p);
  net::awaitable<error_code> read_body(http::request_parser<http::string_body>& parser);
  // Reads a Content-Length body into the parser's message, bypassing the parser.
  net::awaitable<error_code> read_sized_body(http::request_parser<http::string_body>& parser);

  const config& cfg_;
  beast::tcp_stream& stream_;
  beast::flat_buffer buffer_;
};

// The origin form ("/path?query") of a target in absolute form, nullopt for any other target.
std::optional<std::string> origin_form(std::string_view target);

}  // namespace glm::proxy
