#include "proxy/front/connection_refusal.hpp"

#include <array>

#include "protocol/request_id.hpp"
#include "proxy/core/access_record.hpp"
#include "proxy/core/json_response.hpp"
#include "proxy/logging.hpp"

namespace glm::proxy {
namespace {

// The refusal is a few hundred bytes; a client that cannot take them in this long is not worth a
// descriptor.
constexpr auto write_deadline = std::chrono::seconds(5);
constexpr auto linger_time = std::chrono::seconds(1);
// More than a request's headers, far less than a body: a client streaming a large body at a
// refused connection gets cut once this much was drained.
constexpr std::size_t max_drain = 256u << 10;

}  // namespace

net::awaitable<void> connection_refusal::serve(proxy_context& ctx, tcp::socket socket,
                                               connection_gate& lingering) {
  ctx.stats.refused(refusal_reason::max_connections);
  // Logged like every answer, though no request was read: its id is the one the answer carries.
  access_record record;
  record.id = protocol::make_request_id();
  record.status = 503;
  record.end(request_ending::rejected);
  error_code ignored;
  if (auto peer = socket.remote_endpoint(ignored); !ignored) {
    auto addr = peer.address();
    record.client = (addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string()) + ":" +
                    std::to_string(peer.port());
  }
  log_access(record);
  auto place = lingering.try_enter();
  if (!place) {
    socket.close(ignored);
    co_return;
  }
  beast::tcp_stream stream(std::move(socket));
  auto res = json_error_response(503, "too many connections; retry later", false);
  res.set(http::field::retry_after, "1");
  res.set("X-Request-Id", record.id);
  stream.expires_after(std::min<std::chrono::steady_clock::duration>(
      write_deadline, seconds(ctx.cfg.client_write_timeout)));
  auto [ec, written] = co_await http::async_write(stream, res, use_nothrow);
  if (!ec) stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  auto deadline = std::chrono::steady_clock::now() + linger_time;
  std::array<char, 4096> scratch;
  std::size_t drained = 0;
  while (!ec && drained < max_drain) {
    stream.expires_at(deadline);
    std::size_t n;
    std::tie(ec, n) = co_await stream.async_read_some(net::buffer(scratch), use_nothrow);
    drained += n;
  }
  stream.close();
}

}  // namespace glm::proxy
