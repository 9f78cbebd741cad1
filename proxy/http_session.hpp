#pragma once

#include <optional>
#include <string>

#include "proxy/access_record.hpp"
#include "proxy/asio.hpp"
#include "proxy/proxy_context.hpp"

namespace glm::proxy {

// One client connection: reads requests (keep-alive, bounded headers and body, a deadline on each
// read), routes each to its handler, and answers every bad request with a JSON error.
//
// Runs as one coroutine on the connection's executor; all its state is on that frame.
class http_session {
 public:
  http_session(proxy_context& ctx, tcp::socket socket);

  // Serves a connection until it closes; the session lives on this coroutine's frame.
  static net::awaitable<void> serve(proxy_context& ctx, tcp::socket socket) {
    http_session session(ctx, std::move(socket));
    co_await session.run();
  }

  net::awaitable<void> run();

 private:
  // Serves one request; returns whether the connection stays open for the next one.
  net::awaitable<bool> dispatch(http::request<http::string_body>& req);
  net::awaitable<bool> send(http::response<http::string_body> res);
  net::awaitable<void> linger();
  // Reads a Content-Length body into the parser's message, bypassing the parser.
  net::awaitable<error_code> read_sized_body(http::request_parser<http::string_body>& parser);
  static std::string_view metrics_endpoint(std::string_view path);
  // The origin form ("/path?query") of a target in absolute form, nullopt for any other target.
  static std::optional<std::string> origin_form(std::string_view target);

  proxy_context& ctx_;
  beast::tcp_stream stream_;
  unsigned last_status_ = 0;   // the status of the last answer written
  bool head_request_ = false;  // the request being answered is a HEAD: send no body
  access_record record_;       // of the request being served
  std::string peer_;           // the client's address, for access lines
  beast::flat_buffer buffer_;
};

}  // namespace glm::proxy
