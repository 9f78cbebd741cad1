#include "proxy/pd/answer_writer.hpp"

#include "protocol/json_error.hpp"
#include "proxy/core/json_response.hpp"

namespace glm::proxy {

answer_writer::answer_writer(beast::tcp_stream& client, std::string_view request_id,
                             bool keep_alive, bool http10,
                             std::chrono::steady_clock::duration write_timeout)
    : client_(client),
      request_id_(request_id),
      keep_alive_(keep_alive),
      http10_(http10),
      write_timeout_(write_timeout),
      writer_(client, write_timeout) {}

net::awaitable<void> answer_writer::send(http::response<http::string_body> res) {
  res.set("X-Request-Id", request_id_);
  res.keep_alive(keep_alive_);
  status_ = res.result_int();
  client_.expires_after(write_timeout_);
  auto [ec, n] = co_await http::async_write(client_, res, use_nothrow);
  keep_connection_ = !ec && keep_alive_;
}

net::awaitable<void> answer_writer::error(unsigned status, std::string body,
                                          std::string_view message) {
  if (writer_.header_sent()) {
    // The client already has a 200 and part of a stream (a recompute round failed).
    co_await end_with_error(message);
  } else if (body.empty()) {
    co_await send(json_error_response(status, message, keep_alive_));
  } else {
    co_await send(json_response(status, std::move(body), keep_alive_));
  }
}

net::awaitable<bool> answer_writer::start_stream() {
  if (http10_) {
    // HTTP/1.0 cannot read chunked encoding: the body ends when the connection closes.
    writer_.set_unframed();
    keep_alive_ = false;
  }
  http::response<http::empty_body> res{http::status::ok, 11};
  res.set(http::field::server, "glm-proxy");
  res.set(http::field::content_type, "text/event-stream; charset=utf-8");
  res.set(http::field::cache_control, "no-cache");
  res.set("X-Request-Id", request_id_);
  res.keep_alive(keep_alive_);
  status_ = 200;
  keep_connection_ = false;  // until the stream has ended well
  co_return !co_await writer_.write_header(res);
}

net::awaitable<bool> answer_writer::chunk(const std::vector<std::string_view>& parts) {
  co_return !co_await writer_.write_chunk(parts);
}

net::awaitable<void> answer_writer::finish_stream(std::string_view tail) {
  // A stream that ended without a final blank line: its last bytes still belong to the client.
  if (!tail.empty()) {
    if (auto ec = co_await writer_.write_chunk(tail)) co_return;
  }
  auto ec = co_await writer_.write_last();
  keep_connection_ = !ec && keep_alive_;
}

net::awaitable<bool> answer_writer::finish_stream(const std::vector<std::string_view>& parts,
                                                  std::string_view tail) {
  auto ec = co_await writer_.write_chunk(parts, tail, true);
  keep_connection_ = !ec && keep_alive_;
  co_return !ec;
}

net::awaitable<void> answer_writer::end_with_error(std::string_view message) {
  if (!writer_.header_sent()) {
    co_await send(json_error_response(502, message, keep_alive_));
    co_return;
  }
  // Close a half-sent event first, so the error is an event of its own that clients can parse.
  std::string tail = writer_.at_event_boundary() ? "" : "\n\n";
  tail += "data: ";
  tail += protocol::json_error::make(message, protocol::json_error::type_for(502), 502);
  tail += "\n\ndata: [DONE]\n\n";
  auto ec = co_await writer_.write_chunk(tail);
  if (!ec) ec = co_await writer_.write_last();
  keep_connection_ = !ec && keep_alive_;
}

}  // namespace glm::proxy
