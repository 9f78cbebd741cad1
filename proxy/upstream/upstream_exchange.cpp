#include "proxy/upstream/upstream_exchange.hpp"

#include <algorithm>

#include "proxy/upstream/backend_connect.hpp"
#include "proxy/upstream/upstream_pool.hpp"

namespace glm::proxy {

net::awaitable<error_code> upstream_exchange::connect(const balancer::backend_address& to,
                                                      std::chrono::steady_clock::duration timeout,
                                                      connection how) {
  parser_.emplace();
  buffer_.clear();
  reused_ = false;
  wide_reads_ = false;
  if (stream_.socket().is_open()) close();
  if (how == connection::pooled) {
    if (auto socket = upstream_pool::of(stream_.get_executor()).take(to)) {
      stream_.socket() = std::move(*socket);
      reused_ = true;
      co_return error_code{};
    }
  }
  stream_.expires_after(timeout);
  co_return co_await backend_connect(stream_, to);
}

net::awaitable<error_code> upstream_exchange::send(request& req,
                                                   std::chrono::steady_clock::duration timeout) {
  stream_.expires_after(timeout);
  auto [ec, n] = co_await http::async_write(stream_, req, use_nothrow);
  co_return ec;
}

net::awaitable<error_code> upstream_exchange::send(const post& head,
                                                   const std::vector<std::string_view>& body,
                                                   std::chrono::steady_clock::duration timeout) {
  std::size_t length = 0;
  for (auto piece : body) length += piece.size();
  // Formatted by hand: the same few fields every time, with no header container to fill.
  head_.clear();
  head_.append("POST ").append(head.target).append(" HTTP/1.1\r\nHost: ").append(head.host);
  head_.append("\r\nContent-Type: application/json\r\nX-Request-Id: ").append(head.request_id);
  if (!head.bearer.empty()) head_.append("\r\nAuthorization: Bearer ").append(head.bearer);
  head_.append("\r\nContent-Length: ").append(std::to_string(length)).append("\r\n\r\n");
  gather_.clear();
  gather_.push_back(net::buffer(head_));
  for (auto piece : body) {
    if (!piece.empty()) gather_.push_back(net::buffer(piece.data(), piece.size()));
  }
  stream_.expires_after(timeout);
  auto [ec, n] = co_await net::async_write(stream_, gather_, use_nothrow);
  co_return ec;
}

net::awaitable<error_code> upstream_exchange::read_header(
    std::chrono::steady_clock::duration timeout) {
  // vLLM's answers are small headers and a body we stream ourselves: no body limit here.
  parser_->body_limit(boost::none);
  parser_->header_limit(64 * 1024);
  // Room for the header and what follows it in one read (Beast would read 512 bytes into an empty
  // buffer): a prefill answer whole, a decoder's header with its first events. A stream that
  // then idles gives the room back (see below).
  buffer_.reserve(first_read_bytes);
  stream_.expires_after(timeout);
  auto [ec, n] = co_await http::async_read_header(stream_, buffer_, *parser_, use_nothrow);
  // More than a small read's worth of body came with the header: the backend is ahead of us, so
  // read_some() reads wide from the start. Otherwise this may be a paced stream, which holds the
  // buffer for its whole life reading 512 bytes at a time: keep only what is in it, so thousands
  // of open streams stay small.
  if (buffer_.size() > small_read_bytes) {
    wide_reads_ = true;
  } else {
    buffer_.shrink_to_fit();
  }
  co_return ec;
}

net::awaitable<error_code> upstream_exchange::read_body(
    std::string& out, std::size_t limit, std::chrono::steady_clock::time_point deadline) {
  // Through read_some: what the header's read already brought is parsed at once, with no
  // operation and no trip through the scheduler; each read is bounded by the time left.
  char chunk[8192];
  for (;;) {
    auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) co_return beast::error::timeout;
    auto [ec, n] = co_await read_some(chunk, sizeof chunk, left);
    if (out.size() + n > limit) co_return http::error::body_limit;
    out.append(chunk, n);
    if (ec) co_return ec;
    if (n == 0) co_return error_code{};  // the body is complete
  }
}

net::awaitable<std::pair<error_code, std::size_t>> upstream_exchange::read_some(
    char* data, std::size_t size, std::chrono::steady_clock::duration idle) {
  // Eager: one parse takes every chunk received so far (until `data` is full), not one chunk per
  // call, so the events a decoder sent together reach the client in one write.
  parser_->eager(true);
  for (;;) {
    if (parser_->is_done()) co_return std::pair{error_code{}, std::size_t{0}};
    parser_->get().body().data = data;
    parser_->get().body().size = size;
    if (buffer_.size() > 0) {
      error_code ec;
      buffer_.consume(parser_->put(buffer_.data(), ec));
      std::size_t got = size - parser_->get().body().size;
      if (ec == http::error::need_buffer) ec = {};  // `data` is full
      if (ec && ec != http::error::need_more) co_return std::pair{ec, got};
      // Chunk framing alone yields no body byte: read on.
      if (got > 0) co_return std::pair{error_code{}, got};
      if (parser_->is_done()) continue;
    }
    // Reads start at Beast's 512 bytes, which is plenty for a paced stream's one event and keeps
    // many open streams small. A read that fills them says the decoder is ahead of us: from then
    // on each read takes as much as the caller can.
    std::size_t want = wide_reads_ ? std::max(size, small_read_bytes) : small_read_bytes;
    // Only an unfinished chunk-size line or trailer is ever held here; one that fills the buffer
    // (16 KiB) is not HTTP a decoder sends.
    want = std::min(want, buffer_.max_size() - buffer_.size());
    if (want == 0) co_return std::pair{error_code(http::error::buffer_overflow), std::size_t{0}};
    stream_.expires_after(idle);
    auto [ec, n] = co_await stream_.async_read_some(buffer_.prepare(want), use_nothrow);
    buffer_.commit(n);
    if (n == want) wide_reads_ = true;
    if (ec == net::error::eof) {
      // A body delimited by the connection's end is complete now; a chunked one is cut short.
      error_code eof;
      parser_->put_eof(eof);
      if (eof) co_return std::pair{eof, std::size_t{0}};
      continue;
    }
    if (ec) co_return std::pair{ec, std::size_t{0}};
  }
}

void upstream_exchange::recycle(const balancer::backend_address& to) {
  if (!stream_.socket().is_open()) return;
  if (!parser_->is_done() || !parser_->keep_alive() || buffer_.size() != 0) {
    close();
    return;
  }
  stream_.expires_never();
  upstream_pool::of(stream_.get_executor()).put(to, stream_.release_socket());
}

void upstream_exchange::close() {
  error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.close();
}

}  // namespace glm::proxy
