#include "proxy/ops/metrics_fetch.hpp"

#include "proxy/upstream/backend_connect.hpp"
#include "proxy/upstream/upstream_pool.hpp"

namespace glm::proxy {
namespace {

// A buffer that grew past this for one odd answer is not kept for the next scrape.
constexpr std::size_t max_kept_capacity = 1 << 20;
// Beast's largest single read.
constexpr std::size_t read_size = 64 * 1024;

}  // namespace

std::string_view metrics_fetch::reason_of(const error_code& ec) {
  if (ec == beast::error::timeout) return "timeout";
  if (ec == http::error::body_limit) return "too_large";
  if (ec == net::error::connection_refused || ec == net::error::host_not_found ||
      ec == net::error::host_unreachable || ec == net::error::network_unreachable) {
    return "connect";
  }
  return "read";
}

net::awaitable<error_code> metrics_fetch::connect(beast::tcp_stream& stream,
                                                  const balancer::backend_address& to,
                                                  std::chrono::steady_clock::time_point deadline) {
  stream.expires_at(deadline);
  co_return co_await backend_connect(stream, to);
}

net::awaitable<std::string_view> metrics_fetch::get(const balancer::backend_address& to,
                                                    std::chrono::steady_clock::time_point deadline,
                                                    std::size_t cap) {
  auto ex = co_await net::this_coro::executor;
  auto& pool = upstream_pool::of(ex);
  http::request<http::empty_body> req{http::verb::get, "/metrics", 11};
  req.set(http::field::host, to.to_string());
  // prometheus_client answers OpenMetrics or gzip only when asked; the parser reads plain text.
  req.set(http::field::accept, "text/plain");
  if (body_.capacity() > max_kept_capacity) std::string().swap(body_);
  if (buffer_.capacity() > max_kept_capacity) buffer_ = beast::flat_buffer();

  // A kept-alive connection the backend closed meanwhile fails before any answer byte: then once
  // more on a fresh one.
  for (bool pooled : {true, false}) {
    beast::tcp_stream stream(ex);
    std::optional<tcp::socket> idle;
    if (pooled) idle = pool.take(to);
    if (pooled && !idle) continue;
    if (idle) {
      stream.socket() = std::move(*idle);
    } else if (auto ec = co_await connect(stream, to, deadline)) {
      co_return reason_of(ec);
    }
    stream.expires_at(deadline);
    auto [wec, written] = co_await http::async_write(stream, req, use_nothrow);
    buffer_.clear();
    // Beast reads max(512, capacity - size) bytes at a time: without room made here, a 100 KB
    // body takes some 200 reads of 512 bytes (and 200 system calls and timer re-arms).
    buffer_.reserve(read_size);
    http::response_parser<http::string_body> parser;
    parser.header_limit(64 * 1024);
    parser.body_limit(cap);
    body_.clear();
    parser.get().body().swap(body_);  // the kept capacity, empty
    error_code ec = wec;
    if (!ec) {
      auto [rec, n] = co_await http::async_read(stream, buffer_, parser, use_nothrow);
      ec = rec;
    }
    body_.swap(parser.get().body());
    if (ec && pooled && !parser.got_some() && ec != beast::error::timeout) continue;
    if (ec) co_return reason_of(ec);
    if (parser.get().result_int() / 100 != 2) co_return "status";
    if (parser.keep_alive() && buffer_.size() == 0) {
      stream.expires_never();
      pool.put(to, stream.release_socket());
    }
    co_return std::string_view{};
  }
  co_return "read";  // not reached: the fresh attempt always returns
}

}  // namespace glm::proxy
