#include "proxy/front/request_reader.hpp"

#include <algorithm>

#include <boost/beast/core/string.hpp>

#include "protocol/request_splicer.hpp"

namespace glm::proxy {
namespace {

// A client that went away or was too slow gets no answer: there is nobody to read it.
bool client_gone(const error_code& ec) {
  return ec == http::error::end_of_stream || ec == beast::error::timeout ||
         ec == net::error::connection_reset || ec == net::error::eof ||
         ec == http::error::partial_message;
}

}  // namespace

request_reader::request_reader(const config& cfg, beast::tcp_stream& stream)
    : cfg_(cfg), stream_(stream), buffer_(cfg.max_header_bytes + 8192) {}

net::awaitable<read_result> request_reader::read(bool first) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(cfg_.max_header_bytes));
  parser.body_limit(cfg_.max_body_bytes);
  // A fresh connection must send its headers promptly (slowloris); an idle keep-alive
  // connection may wait longer for its next request.
  stream_.expires_after(seconds(first ? cfg_.header_timeout : cfg_.idle_timeout));
  // Beast sizes a read by the buffer's spare room (512 bytes when empty): a typical OpenAI
  // request (header and a JSON body of a few hundred bytes) would take two reads. Given room, one
  // read takes the header and often the whole body; the room is given back once the request is
  // read, so an idle keep-alive connection holds no buffer.
  buffer_.reserve(std::min(first_read_bytes, buffer_.max_size()));
  auto [ec, n] = co_await http::async_read_header(stream_, buffer_, parser, use_nothrow);
  if (ec) co_return refusal_for(ec, false);
  std::optional<answer> refused = check_transfer_encoding(parser);
  if (!refused) {
    // curl and others wait for this before sending a large body.
    if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
      stream_.expires_after(seconds(cfg_.client_write_timeout));
      auto [wec, wn] = co_await net::async_write(
          stream_, net::buffer("HTTP/1.1 100 Continue\r\n\r\n", 25), use_nothrow);
      if (wec) co_return read_result{};
    }
    ec = co_await read_body(parser);
  }
  read_result out;
  if (refused) {
    out.what = read_result::kind::refusal;
    out.refusal = std::move(*refused);
  } else if (ec) {
    out = refusal_for(ec, true);
    if (out.what == read_result::kind::closed) co_return out;
  } else {
    out.what = read_result::kind::request;
  }
  stream_.expires_never();
  if (buffer_.size() == 0) buffer_.shrink_to_fit();  // kept only with pipelined bytes in it
  out.request = parser.release();
  out.has_header = true;
  if (auto origin = origin_form(out.request.target())) out.request.target(*origin);
  co_return out;
}

read_result request_reader::refusal_for(const error_code& ec, bool in_body) const {
  read_result out;
  if (ec == http::error::header_limit) {
    out.refusal = answer::refusal(431, "request headers are too large",
                                  refusal_reason::headers_too_large, false);
  } else if (ec == http::error::body_limit) {
    out.refusal = answer::refusal(
        413, "request body is larger than " + std::to_string(cfg_.max_body_bytes) + " bytes",
        refusal_reason::body_too_large, false);
  } else if (client_gone(ec) && (in_body || ec != http::error::partial_message)) {
    return out;  // closed, without an answer
  } else {
    out.refusal = answer::refusal(400, "malformed HTTP request: " + ec.message(),
                                  refusal_reason::malformed, false);
  }
  out.what = read_result::kind::refusal;
  return out;
}

std::optional<answer> request_reader::check_transfer_encoding(
    const http::request_parser<http::string_body>& parser) {
  // RFC 9112 6.1: when the last transfer coding is not chunked the body has no knowable length
  // (400, and Beast would fall back on Content-Length: a request-smuggling vector); codings
  // before chunked ("gzip, chunked") are not implemented (501).
  auto te = parser.get()[http::field::transfer_encoding];
  if (te.empty()) return std::nullopt;
  if (!parser.get().chunked()) {
    return answer::refusal(400, "Transfer-Encoding must end with chunked",
                           refusal_reason::malformed, false);
  }
  if (!beast::iequals(te, "chunked")) {
    return answer::refusal(501, "only the chunked transfer coding is supported",
                           refusal_reason::not_implemented, false);
  }
  return std::nullopt;
}

net::awaitable<error_code> request_reader::read_body(
    http::request_parser<http::string_body>& parser) {
  // The body arrives read by read, each with its own deadline: a big prompt on a slow link
  // is fine, a stalled one is not.
  if (!parser.is_done() && !parser.chunked() && parser.content_length()) {
    co_return co_await read_sized_body(parser);
  }
  error_code ec;
  while (!ec && !parser.is_done()) {
    stream_.expires_after(seconds(cfg_.header_timeout));
    std::size_t n;
    std::tie(ec, n) = co_await http::async_read_some(stream_, buffer_, parser, use_nothrow);
  }
  co_return ec;
}

net::awaitable<error_code> request_reader::read_sized_body(
    http::request_parser<http::string_body>& parser) {
  // A body of known length is read straight into a string of that size: one copy out of the
  // kernel, in reads as large as the socket has. Through the parser every byte would be copied
  // twice, in reads of about 512 bytes (Beast sizes a read by the buffer's spare capacity, and
  // buffer_ stays small so an idle connection costs little): ~2,000 reads for a 1 MiB prompt.
  // The parser has seen only the header and is released right after this; its message keeps
  // this body.
  const std::size_t length = static_cast<std::size_t>(*parser.content_length());
  std::string& body = parser.get().body();
  body.reserve(length + protocol::request_splicer::padding);
  body.resize(length);
  std::size_t got = net::buffer_copy(net::buffer(body), buffer_.data());
  buffer_.consume(got);
  while (got < length) {
    stream_.expires_after(seconds(cfg_.header_timeout));
    auto [ec, n] =
        co_await stream_.async_read_some(net::buffer(body.data() + got, length - got), use_nothrow);
    got += n;
    if (ec) co_return ec == net::error::eof ? http::error::partial_message : ec;
  }
  co_return error_code{};
}

std::optional<std::string> origin_form(std::string_view target) {
  // RFC 9112 3.2.2: a server must accept a target in absolute form ("http://host:port/path?q"),
  // as proxies and some clients send it; only its path and query name the resource here.
  auto starts_with_ci = [&](std::string_view prefix) {
    return target.size() >= prefix.size() &&
           beast::iequals(target.substr(0, prefix.size()), prefix);
  };
  std::size_t scheme = starts_with_ci("http://") ? 7 : starts_with_ci("https://") ? 8 : 0;
  if (scheme == 0) return std::nullopt;
  std::size_t path = target.find_first_of("/?", scheme);
  if (path == std::string_view::npos) return std::string("/");
  if (target[path] == '?') return "/" + std::string(target.substr(path));
  return std::string(target.substr(path));
}

}  // namespace glm::proxy
