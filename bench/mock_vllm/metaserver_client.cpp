#include "bench/mock_vllm/metaserver_client.hpp"

#include <charconv>
#include <optional>
#include <string_view>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

namespace glm::mock {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

struct parsed_url {
  std::string host;
  std::string port;
  std::string target;
};

std::optional<parsed_url> parse_url(std::string_view url) {
  constexpr std::string_view scheme = "http://";
  if (!url.starts_with(scheme)) return std::nullopt;
  url.remove_prefix(scheme.size());
  const std::size_t slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  parsed_url out;
  out.target = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  std::string_view port = "80";
  if (authority.starts_with('[')) {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    out.host = std::string(authority.substr(1, close - 1));
    authority.remove_prefix(close + 1);
    if (authority.starts_with(':'))
      port = authority.substr(1);
    else if (!authority.empty())
      return std::nullopt;
  } else {
    const std::size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (out.host.empty() || ec != std::errc() || end != port.data() + port.size() || value == 0 ||
      value > 65535) {
    return std::nullopt;
  }
  out.port = std::string(port);
  return out;
}

}  // namespace

net::awaitable<metaserver_answer> metaserver_client::post(std::string url, std::string body,
                                                          std::chrono::milliseconds timeout) {
  metaserver_answer answer;
  answer.sent_at = std::chrono::system_clock::now();
  const std::optional<parsed_url> where = parse_url(url);
  if (!where) {
    answer.error = "not an http://HOST:PORT/PATH URL";
    answer.answered_at = std::chrono::system_clock::now();
    co_return answer;
  }
  const auto executor = co_await net::this_coro::executor;
  http::request<http::string_body> req{http::verb::post, where->target, 11};
  const bool v6 = where->host.find(':') != std::string::npos;
  req.set(http::field::host, (v6 ? "[" + where->host + "]" : where->host) + ":" + where->port);
  req.set(http::field::content_type, "application/json");
  req.set(http::field::user_agent, "mock-vllm layerwise connector");
  req.keep_alive(false);
  req.body() = std::move(body);
  req.prepare_payload();

  while (answer.attempts < max_attempts && answer.status == 0) {
    ++answer.attempts;
    beast::tcp_stream stream(executor);
    tcp::resolver resolver(executor);
    auto [resolve_ec, endpoints] =
        co_await resolver.async_resolve(where->host, where->port, use_tuple);
    if (resolve_ec) {
      answer.error = "resolve: " + resolve_ec.message();
      continue;
    }
    // One deadline per operation, re-armed: the connector's httpx client would wait forever.
    stream.expires_after(timeout);
    auto [connect_ec, endpoint] = co_await stream.async_connect(endpoints, use_tuple);
    if (connect_ec == beast::error::timeout) {
      answer.error = "timeout";
      break;  // the bound is the mock's own, not the connector's: do not triple it
    }
    if (connect_ec) {
      answer.error = "connect: " + connect_ec.message();
      continue;
    }
    stream.expires_after(timeout);
    auto [write_ec, written] = co_await http::async_write(stream, req, use_tuple);
    if (write_ec == beast::error::timeout) {
      answer.error = "timeout";
      break;
    }
    if (write_ec) {
      answer.error = "write: " + write_ec.message();
      continue;
    }
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(body_limit);
    stream.expires_after(timeout);
    auto [read_ec, read] = co_await http::async_read(stream, buffer, parser, use_tuple);
    if (read_ec == beast::error::timeout) {
      answer.error = "timeout";
      break;
    }
    if (read_ec) {
      answer.error = "read: " + read_ec.message();
      continue;
    }
    answer.status = static_cast<int>(parser.get().result_int());
    answer.body = std::move(parser.get().body());
    answer.error.clear();
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  }
  answer.answered_at = std::chrono::system_clock::now();
  co_return answer;
}

}  // namespace glm::mock
