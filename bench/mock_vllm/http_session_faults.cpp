// http_session, part: the injected faults (garbage, resets, cut bodies, hangs).
#include "bench/mock_vllm/http_session.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <memory>
#include <tuple>
#include <utility>
#include <variant>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>

#include <simdjson.h>

#include "bench/mock_vllm/asio_names.hpp"
#include "bench/mock_vllm/json_text.hpp"
#include "bench/mock_vllm/metaserver_client.hpp"
#include "bench/mock_vllm/prompt_renderer.hpp"

namespace glm::mock {

using namespace net::experimental::awaitable_operators;

net::awaitable<http_session::next> http_session::write_garbage() {
  // What a peer that does not speak HTTP sends: an SSH banner and binary bytes, then it hangs up.
  static constexpr std::string_view garbage =
      "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\x00\x01\x02\xff\xfe garbage \x16\x03\x01\r\n\r\n";
  co_await net::async_write(socket_, net::buffer(garbage), use_tuple);
  co_return next::close;
}

http_session::next http_session::reset() {
  // SO_LINGER 0: close() sends a RST instead of a FIN, as a crashed or rebooted host's kernel
  // does.
  beast::error_code ignored;
  socket_.set_option(net::socket_base::linger(true, 0), ignored);
  socket_.close(ignored);
  return next::close;
}

net::awaitable<http_session::next> http_session::write_partial(std::string body, bool then_reset) {
  // The whole body's Content-Length, half of its bytes, then a hang (or a reset).
  std::string head =
      "HTTP/1.1 200 OK\r\nServer: mock-vllm\r\nContent-Type: application/json\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n";
  head.append(body, 0, body.size() / 2);
  auto [ec, written] = co_await net::async_write(socket_, net::buffer(head), use_tuple);
  if (ec) co_return next::close;
  if (then_reset) co_return reset();
  co_return co_await hang();
}

net::awaitable<http_session::next> http_session::hang() {
  co_await watch_peer();
  state_.count_client_disconnect();
  co_return next::close;
}

net::awaitable<void> http_session::sleep_forever() {
  net::steady_timer timer(co_await net::this_coro::executor, net::steady_timer::time_point::max());
  co_await timer.async_wait(use_tuple);
}

}  // namespace glm::mock
