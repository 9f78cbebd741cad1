#pragma once

#include <optional>

#include "proxy/access_policy.hpp"
#include "proxy/access_record.hpp"
#include "proxy/asio.hpp"
#include "proxy/connection_gate.hpp"
#include "proxy/inflight_gate.hpp"
#include "proxy/proxy_context.hpp"

namespace glm::proxy {

// One client connection: reads requests (keep-alive, bounded headers and body, a deadline on each
// read), routes each to its handler, and answers every bad request with a JSON error.
//
// Before a handler runs, the access policy (--api-key, --admin-token) and, for completions, the
// in-flight limit (--max-inflight, --queue-timeout) may turn the request away; every refusal is a
// JSON error and counts in glm_proxy_refusals_total.
//
// Runs as one coroutine on the connection's executor; all its state is on that frame, including
// the connection's place under --max-connections, given back when the frame goes.
class http_session {
 public:
  http_session(proxy_context& ctx, tcp::socket socket, connection_gate::ticket place);

  // Serves a connection until it closes; the session lives on this coroutine's frame.
  static net::awaitable<void> serve(proxy_context& ctx, tcp::socket socket,
                                    connection_gate::ticket place) {
    http_session session(ctx, std::move(socket), std::move(place));
    co_await session.run();
  }

  net::awaitable<void> run();

 private:
  // Serves one request; returns whether the connection stays open for the next one.
  net::awaitable<bool> dispatch(http::request<http::string_body>& req);
  net::awaitable<bool> send(http::response<http::string_body> res);
  // Answers a request the access policy turned away and returns whether the connection stays
  // open; nullopt (nothing sent) when the verdict is allowed.
  net::awaitable<std::optional<bool>> refuse(access_policy::verdict verdict, bool keep_alive);

  // What admit() decided: a place in flight, or an answer already sent.
  struct admission {
    inflight_gate::slot place;
    bool keep_connection = false;  // when refused: whether the connection stays open
  };
  // Takes a place under --max-inflight, waiting in line up to --queue-timeout while watching for
  // the client to leave. Without a place, the refusal (503) has been answered.
  net::awaitable<admission> admit(bool keep_alive);
  net::awaitable<void> linger();
  // Reads a Content-Length body into the parser's message, bypassing the parser.
  net::awaitable<error_code> read_sized_body(http::request_parser<http::string_body>& parser);
  static std::string_view metrics_endpoint(std::string_view path);

  proxy_context& ctx_;
  connection_gate::ticket place_;  // this connection's place under --max-connections
  access_policy policy_;
  beast::tcp_stream stream_;
  unsigned last_status_ = 0;       // the status of the last answer written
  access_record record_;           // of the request being served
  std::string peer_;               // the client's address, for access lines
  net::ip::address peer_address_;  // for the loopback-only default of the admin endpoints
  beast::flat_buffer buffer_;
};

}  // namespace glm::proxy
