#include "proxy/pd/chunked_writer.hpp"

#include <algorithm>
#include <array>
#include <cstdio>

namespace glm::proxy {

net::awaitable<error_code> chunked_writer::write_header(http::response<http::empty_body>& res) {
  if (unframed_) {
    res.chunked(false);
    res.keep_alive(false);
  } else {
    res.chunked(true);
  }
  // Formatted here, written with the first bytes of the body (send_gathered()).
  http::response_serializer<http::empty_body> sr(res);
  sr.split(true);
  header_.clear();
  error_code ec;
  while (!ec && !sr.is_header_done()) {
    std::size_t n = 0;
    sr.next(ec, [&](error_code&, const auto& buffers) {
      for (net::const_buffer b : beast::buffers_range_ref(buffers)) {
        header_.append(static_cast<const char*>(b.data()), b.size());
      }
      n = net::buffer_size(buffers);
    });
    if (!ec) sr.consume(n);
  }
  header_sent_ = !ec;
  header_pending_ = !ec;
  co_return ec;
}

void chunked_writer::note_tail(std::string_view data) {
  // Only the last bytes decide whether the body now ends on a blank line.
  int newlines = 0;
  std::size_t i = data.size();
  bool other_byte = false;
  while (i > 0 && newlines < 2) {
    char c = data[--i];
    if (c == '\n') {
      ++newlines;
    } else if (c != '\r') {
      other_byte = true;
      break;
    }
  }
  tail_ = (newlines == 2 || other_byte) ? newlines : std::min(2, tail_ + newlines);
}

net::awaitable<error_code> chunked_writer::write_chunk(std::string_view data) {
  if (data.empty()) co_return error_code{};  // an empty chunk would end the body
  note_tail(data);
  gather_.clear();
  gather_.push_back(net::buffer(data.data(), data.size()));
  co_return co_await write_gathered(data.size());
}

net::awaitable<error_code> chunked_writer::write_chunk(const std::vector<std::string_view>& parts,
                                                       std::string_view tail, bool last) {
  std::size_t total = 0;
  gather_.clear();
  auto add = [&](std::string_view p) {
    if (p.empty()) return;
    total += p.size();
    note_tail(p);
    gather_.push_back(net::buffer(p.data(), p.size()));
  };
  for (std::string_view p : parts) add(p);
  add(tail);
  if (total == 0) {
    // An empty chunk would end the body: only the last chunk itself, if asked for.
    if (last) co_return co_await write_last();
    co_return error_code{};
  }
  co_return co_await write_gathered(total, last);
}

net::awaitable<error_code> chunked_writer::write_gathered(std::size_t total, bool last) {
  if (unframed_) co_return co_await send_gathered();  // the body ends with the connection
  int len = std::snprintf(size_line_, sizeof size_line_, "%zx\r\n", total);
  gather_.insert(gather_.begin(), net::buffer(size_line_, static_cast<std::size_t>(len)));
  if (last) {
    gather_.push_back(net::buffer("\r\n0\r\n\r\n", 7));
  } else {
    gather_.push_back(net::buffer("\r\n", 2));
  }
  co_return co_await send_gathered();
}

net::awaitable<error_code> chunked_writer::write_last() {
  gather_.clear();
  if (unframed_) {
    // No last chunk; only a header still waiting for a body that never came.
    if (!header_pending_) co_return error_code{};
    co_return co_await send_gathered();
  }
  gather_.push_back(net::buffer("0\r\n\r\n", 5));
  co_return co_await send_gathered();
}

net::awaitable<error_code> chunked_writer::send_gathered() {
  // A streamed event almost always fits in the socket's send buffer: one non-blocking sendmsg
  // sends it without arming the timer, suspending, or a trip through the scheduler, which per
  // token cost more than the send itself. Only the bytes that do not fit wait, asynchronously,
  // under a freshly armed write timeout.
  struct release_header {
    std::string* header;  // a held stream should not keep its header's bytes once they are sent
    ~release_header() {
      if (header != nullptr) std::string().swap(*header);
    }
  } release{header_pending_ ? &header_ : nullptr};
  if (header_pending_) {
    gather_.insert(gather_.begin(), net::buffer(header_));
    header_pending_ = false;  // written now, or the connection is lost
  }
  auto& socket = client_.socket();
  error_code ec;
  if (!socket.non_blocking()) socket.non_blocking(true, ec);
  std::size_t sent = ec ? 0 : socket.write_some(gather_, ec);
  if (ec && ec != net::error::would_block && ec != net::error::try_again) co_return ec;
  if (!ec && sent == net::buffer_size(gather_)) co_return ec;
  beast::buffers_suffix<std::vector<net::const_buffer>> rest(gather_);
  rest.consume(sent);
  client_.expires_after(timeout_);
  auto [wec, n] = co_await net::async_write(client_, rest, use_nothrow);
  co_return wec;
}

}  // namespace glm::proxy
