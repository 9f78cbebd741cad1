#pragma once

#include <optional>
#include <string>

#include "proxy/core/access_record.hpp"
#include "proxy/core/answer.hpp"
#include "proxy/core/asio.hpp"
#include "proxy/core/proxy_context.hpp"
#include "proxy/front/access_policy.hpp"
#include "proxy/front/connection_gate.hpp"
#include "proxy/front/route_table.hpp"

namespace glm::proxy {

// One client connection: reads requests with front/request_reader (keep-alive, bounded headers
// and body, a deadline on each read), routes each through front/route_table, and finishes every
// answer the same way: written (unless the handler streamed it), given the request's
// X-Request-Id, counted in glm_proxy_requests_total (and glm_proxy_refusals_total for a refusal)
// and logged as one access line. Handlers return answers; they never write an error themselves.
//
// Before a handler runs, the access policy (--api-key, --admin-token) and, for completions, the
// in-flight limit (--max-inflight, --queue-timeout) may turn the request away.
//
// Runs as one coroutine on the connection's executor; all its state is on that frame, including
// the connection's place under --max-connections, given back when the frame goes.
//
// `answering` counts, across all workers, the requests read and not yet answered and logged: the
// drain after SIGTERM waits for them, also for those that hold no backend load (an error answer,
// the last write of a stream whose decoder is already given back).
class http_session {
 public:
  http_session(proxy_context& ctx, tcp::socket socket, connection_gate::ticket place,
               connection_gate& answering);

  // Serves a connection until it closes; the session lives on this coroutine's frame.
  static net::awaitable<void> serve(proxy_context& ctx, tcp::socket socket,
                                    connection_gate::ticket place, connection_gate& answering) {
    http_session session(ctx, std::move(socket), std::move(place), answering);
    co_await session.run();
  }

  net::awaitable<void> run();

 private:
  // The answer to one request read whole (refusals included).
  net::awaitable<answer> handle(http::request<http::string_body>& req, access_record& record);
  // Calls the route's handler.
  net::awaitable<answer> invoke(const route& r, http::request<http::string_body>& req,
                                access_record& record);
  // The 401 or 403 when the access policy turns the request away.
  std::optional<answer> check_access(const route& r, const http::request<http::string_body>& req);
  // Writes the answer unless the handler did, then counts and logs it. Returns whether the
  // connection stays open.
  net::awaitable<bool> finish(answer a, access_record& record, endpoint label, bool head,
                              std::chrono::steady_clock::time_point started);
  net::awaitable<bool> write(http::response<http::string_body>& res, bool head);
  access_record start_record(const http::request<http::string_body>& req, bool has_header) const;
  net::awaitable<void> linger();

  proxy_context& ctx_;
  connection_gate::ticket place_;  // this connection's place under --max-connections
  connection_gate& answering_;
  access_policy policy_;
  beast::tcp_stream stream_;
  std::string peer_;               // the client's address, for access lines
  net::ip::address peer_address_;  // for the loopback-only default of the admin endpoints
};

}  // namespace glm::proxy
