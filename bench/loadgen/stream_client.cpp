#include "bench/loadgen/stream_client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>

#include "bench/loadgen/sse_stream_checker.hpp"

namespace glm::loadgen {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

std::chrono::steady_clock::duration seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(s));
}

}  // namespace

stream_client::stream_client(net::io_context& ioc, const loadgen_config& config, const target& to,
                             std::string_view head, std::string_view body, run_stats& stats,
                             run_control& control)
    : stream_(ioc),
      config_(config),
      to_(to),
      head_(head),
      body_(body),
      stats_(stats),
      control_(control) {}

net::awaitable<void> stream_client::run_closed_loop() {
  while (control_.take_ticket()) {
    if (!stream_.socket().is_open() && !co_await connect()) {
      // Spent a ticket; pause so a refused connect does not spin the core under test.
      net::steady_timer pause(co_await net::this_coro::executor, std::chrono::milliseconds(50));
      co_await pause.async_wait(use_tuple);
      continue;
    }
    if (co_await one_request(head_, body_, nullptr) == connection::close) close();
  }
  close();
}

net::awaitable<stream_client::turn_result> stream_client::run_turn(std::string_view head,
                                                                   std::string_view body) {
  turn_result out;
  if (!stream_.socket().is_open() && !co_await connect()) co_return out;
  if (co_await one_request(head, body, &out) == connection::close) close();
  co_return out;
}

net::awaitable<void> stream_client::run_hold(clock::duration start_delay) {
  if (start_delay.count() > 0) {
    net::steady_timer wait(co_await net::this_coro::executor, start_delay);
    co_await wait.async_wait(use_tuple);
  }
  if (co_await connect()) co_await one_request(head_, body_, nullptr);
  close();
}

net::awaitable<bool> stream_client::connect() {
  boost::system::error_code ec;
  const auto address = net::ip::make_address(to_.host, ec);
  if (ec) {
    stats_.add_error("bad_address", clock::now());
    co_return false;
  }
  stream_.expires_after(seconds(config_.request_timeout_s));
  auto [cec] = co_await stream_.async_connect(tcp::endpoint(address, to_.port), use_tuple);
  if (cec) {
    stats_.add_error(cec == beast::error::timeout ? "connect_timeout" : "connect", clock::now());
    close();
    co_return false;
  }
  stream_.socket().set_option(tcp::no_delay(true), ec);
  buffer_.clear();
  co_return true;
}

net::awaitable<stream_client::connection> stream_client::one_request(std::string_view head,
                                                                     std::string_view body,
                                                                     turn_result* out) {
  const clock::time_point sent = clock::now();
  // One deadline for the whole exchange: tcp_stream keeps it across operations.
  stream_.expires_at(sent + seconds(config_.request_timeout_s));
  control_.stream_opened();
  struct open_guard {
    run_control& control;
    ~open_guard() { control.stream_closed(); }
  } guard{control_};

  auto fail = [&](std::string_view kind, const boost::system::error_code& ec) {
    stats_.add_error(ec == beast::error::timeout ? std::string_view("timeout") : kind,
                     clock::now());
    return connection::close;
  };

  const std::array<net::const_buffer, 2> request{net::buffer(head), net::buffer(body)};
  auto [wec, written] = co_await net::async_write(stream_, request, use_tuple);
  if (wec) co_return fail("write", wec);

  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  auto [hec, hn] = co_await http::async_read_header(stream_, buffer_, parser, use_tuple);
  if (hec) co_return fail("read_header", hec);
  const unsigned status = parser.get().result_int();

  sse_stream_checker checker(config_.max_tokens, config_.check_order, sent);
  if (out != nullptr) checker.keep_text();
  while (!parser.is_done()) {
    parser.get().body().data = read_buffer_.data();
    parser.get().body().size = read_buffer_.size();
    auto [ec, n] = co_await http::async_read_some(stream_, buffer_, parser, use_tuple);
    if (ec == http::error::need_buffer) ec = {};
    const std::size_t got = read_buffer_.size() - parser.get().body().size;
    if (got > 0 && status == 200) {
      checker.feed(std::string_view(read_buffer_.data(), got), clock::now());
    }
    if (ec) co_return fail("read_body", ec);
  }
  const clock::time_point finished = clock::now();
  const connection next = parser.keep_alive() ? connection::keep : connection::close;
  if (status != 200) {
    stats_.add_error("http_" + std::to_string(status), finished);
    co_return next;
  }
  if (const std::string_view verdict = checker.verdict(); !verdict.empty()) {
    stats_.add_error(verdict, finished);
    co_return connection::close;
  }
  stats_.add_ok(checker.ttft(), checker.gaps_us(), finished - sent, checker.tokens(), finished);
  if (out != nullptr) {
    stats_.add_usage(checker.prompt_tokens(), checker.cached_tokens());
    out->ok = true;
    out->text = checker.text();
    out->prompt_tokens = checker.prompt_tokens();
    out->cached_tokens = checker.cached_tokens();
  }
  co_return next;
}

void stream_client::close() {
  boost::system::error_code ignored;
  if (!stream_.socket().is_open()) return;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.close();
}

}  // namespace glm::loadgen
