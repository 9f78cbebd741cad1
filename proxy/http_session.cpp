#include "proxy/http_session.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/core/string.hpp>

#include "protocol/request_splicer.hpp"
#include "proxy/admin_endpoints.hpp"
#include "proxy/client_departure.hpp"
#include "proxy/health_report.hpp"
#include "proxy/json_response.hpp"
#include "proxy/logging.hpp"
#include "proxy/pd_request.hpp"

namespace glm::proxy {

namespace {

// A queue timeout beyond this is "wait as long as it takes"; it keeps the timer arithmetic finite.
constexpr double max_queue_seconds = 365.0 * 24 * 3600;

bool is_completion(std::string_view path) {
  return path == "/v1/completions" || path == "/v1/chat/completions";
}

}  // namespace

http_session::http_session(proxy_context& ctx, tcp::socket socket, connection_gate::ticket place)
    : ctx_(ctx),
      place_(std::move(place)),
      policy_(ctx.cfg.api_key, ctx.cfg.admin_token),
      stream_(std::move(socket)),
      buffer_(ctx.cfg.max_header_bytes + 8192) {}

net::awaitable<void> http_session::run() {
  ctx_.stats.connection_opened();
  struct count_close {
    metrics& m;
    ~count_close() { m.connection_closed(); }
  } closing{ctx_.stats};
  error_code ignored;
  stream_.socket().set_option(tcp::no_delay(true), ignored);
  if (auto peer = stream_.socket().remote_endpoint(ignored); !ignored) {
    auto addr = peer.address();
    peer_address_ = addr;
    peer_ = (addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string()) + ":" +
            std::to_string(peer.port());
  }
  bool first = true;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(ctx_.cfg.max_header_bytes));
    parser.body_limit(ctx_.cfg.max_body_bytes);

    // A fresh connection must send its headers promptly (slowloris); an idle keep-alive
    // connection may wait longer for its next request.
    stream_.expires_after(seconds(first ? ctx_.cfg.header_timeout : ctx_.cfg.idle_timeout));
    first = false;
    auto [ec, n] = co_await http::async_read_header(stream_, buffer_, parser, use_nothrow);
    if (ec == http::error::header_limit) {
      co_await send(json_error_response(431, "request headers are too large", false));
      ctx_.stats.refused("headers_too_large");
      ctx_.stats.request_done("invalid", last_status_, 0);
      break;
    }
    if (ec == http::error::body_limit) {
      co_await send(json_error_response(
          413, "request body is larger than " + std::to_string(ctx_.cfg.max_body_bytes) + " bytes",
          false));
      ctx_.stats.refused("body_too_large");
      ctx_.stats.request_done("invalid", last_status_, 0);
      break;
    }
    if (ec) {
      if (ec != http::error::end_of_stream && ec != beast::error::timeout &&
          ec != net::error::connection_reset && ec != net::error::eof) {
        co_await send(json_error_response(400, "malformed HTTP request: " + ec.message(), false));
        ctx_.stats.refused("malformed");
        ctx_.stats.request_done("invalid", last_status_, 0);
      }
      break;
    }

    // curl and others wait for this before sending a large body.
    if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
      stream_.expires_after(seconds(ctx_.cfg.client_write_timeout));
      auto [wec, wn] = co_await net::async_write(
          stream_, net::buffer("HTTP/1.1 100 Continue\r\n\r\n", 25), use_nothrow);
      if (wec) break;
    }
    // The body arrives read by read, each with its own deadline: a big prompt on a slow link
    // is fine, a stalled one is not.
    bool sized = !parser.is_done() && !parser.chunked() && parser.content_length();
    if (sized) ec = co_await read_sized_body(parser);
    while (!sized && !ec && !parser.is_done()) {
      stream_.expires_after(seconds(ctx_.cfg.header_timeout));
      std::tie(ec, n) = co_await http::async_read_some(stream_, buffer_, parser, use_nothrow);
    }
    if (ec == http::error::body_limit) {
      co_await send(json_error_response(
          413, "request body is larger than " + std::to_string(ctx_.cfg.max_body_bytes) + " bytes",
          false));
      ctx_.stats.refused("body_too_large");
      ctx_.stats.request_done("invalid", last_status_, 0);
      break;
    }
    if (ec) {
      if (ec != beast::error::timeout && ec != http::error::end_of_stream &&
          ec != net::error::connection_reset && ec != net::error::eof &&
          ec != http::error::partial_message) {
        co_await send(json_error_response(400, "malformed HTTP request: " + ec.message(), false));
        ctx_.stats.refused("malformed");
        ctx_.stats.request_done("invalid", last_status_, 0);
      }
      break;
    }
    stream_.expires_never();
    auto req = parser.release();
    auto started = std::chrono::steady_clock::now();
    std::string_view target = req.target();
    record_ = access_record{};
    record_.client = peer_;
    record_.method = req.method_string();
    record_.endpoint = target.substr(0, target.find('?'));
    bool keep = co_await dispatch(req);
    double duration =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    ctx_.stats.request_done(metrics_endpoint(record_.endpoint), last_status_, duration);
    record_.status = last_status_;
    record_.duration_seconds = duration;
    log_access(record_);
    if (!keep) break;
  }
  co_await linger();
}

net::awaitable<error_code> http_session::read_sized_body(
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
    stream_.expires_after(seconds(ctx_.cfg.header_timeout));
    auto [ec, n] =
        co_await stream_.async_read_some(net::buffer(body.data() + got, length - got), use_nothrow);
    got += n;
    if (ec) co_return ec == net::error::eof ? http::error::partial_message : ec;
  }
  co_return error_code{};
}

net::awaitable<void> http_session::linger() {
  // Close like nginx's lingering_close: stop sending, then drain what the client still sends for a
  // moment, so an error answered before the body was read (413) is not lost to a TCP reset.
  error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  std::array<char, 4096> scratch;
  std::size_t drained = 0;
  while (!ec && drained < ctx_.cfg.max_body_bytes && std::chrono::steady_clock::now() < deadline) {
    stream_.expires_at(deadline);
    std::size_t n;
    std::tie(ec, n) = co_await stream_.async_read_some(net::buffer(scratch), use_nothrow);
    drained += n;
  }
  stream_.close();
}

net::awaitable<bool> http_session::dispatch(http::request<http::string_body>& req) {
  std::string_view target = req.target();
  std::string_view path = target.substr(0, target.find('?'));
  bool keep_alive = req.keep_alive();

  if (is_completion(path)) {
    if (req.method() != http::verb::post) {
      auto res = json_error_response(405, "method not allowed; use POST", keep_alive);
      res.set(http::field::allow, "POST");
      co_return co_await send(std::move(res)) && keep_alive;
    }
    if (auto keep =
            co_await refuse(policy_.inference(req[http::field::authorization]), keep_alive)) {
      co_return *keep;
    }
    // Held until the answer has ended, however it ends.
    inflight_gate::slot place;
    if (ctx_.inflight.limit() != 0) {
      auto admitted = co_await admit(keep_alive);
      if (!admitted.place) co_return admitted.keep_connection;
      place = std::move(admitted.place);
    }
    pd_request pd(ctx_, stream_, req, path, record_);
    bool keep = co_await pd.run();
    last_status_ = pd.status();
    co_return keep;
  }
  if (path == "/healthcheck") {
    if (req.method() != http::verb::get) {
      auto res = json_error_response(405, "method not allowed; use GET", keep_alive);
      res.set(http::field::allow, "GET");
      co_return co_await send(std::move(res)) && keep_alive;
    }
    co_return co_await send(json_response(200, health_report(ctx_.lb), keep_alive)) && keep_alive;
  }
  if (path == "/metrics") {
    if (req.method() != http::verb::get) {
      auto res = json_error_response(405, "method not allowed; use GET", keep_alive);
      res.set(http::field::allow, "GET");
      co_return co_await send(std::move(res)) && keep_alive;
    }
    http::response<http::string_body> res{http::status::ok, 11};
    res.set(http::field::server, "glm-proxy");
    res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    res.keep_alive(keep_alive);
    ctx_.stats.inflight_gate_state(ctx_.inflight.inflight(), ctx_.inflight.waiting());
    res.body() = ctx_.stats.serialize(ctx_.lb);
    res.prepare_payload();
    co_return co_await send(std::move(res)) && keep_alive;
  }
  if (path == "/v1/models" || path == "/reset_prefix_cache" || path == "/instances/add" ||
      path == "/instances/remove") {
    bool is_get = path == "/v1/models";
    if (req.method() != (is_get ? http::verb::get : http::verb::post)) {
      auto res = json_error_response(
          405, is_get ? "method not allowed; use GET" : "method not allowed; use POST", keep_alive);
      res.set(http::field::allow, is_get ? "GET" : "POST");
      co_return co_await send(std::move(res)) && keep_alive;
    }
    auto authorization = req[http::field::authorization];
    auto verdict =
        is_get ? policy_.inference(authorization) : policy_.admin(authorization, peer_address_);
    if (auto keep = co_await refuse(verdict, keep_alive)) co_return *keep;
    admin_endpoints admin(ctx_);
    admin_endpoints::response res;
    if (path == "/v1/models") {
      res = co_await admin.models(keep_alive);
    } else if (path == "/reset_prefix_cache") {
      res = co_await admin.reset_prefix_cache(target, keep_alive);
    } else if (path == "/instances/add") {
      res = admin.add_instances(req.body(), keep_alive);
    } else {
      res = admin.remove_instances(req.body(), keep_alive);
    }
    co_return co_await send(std::move(res)) && keep_alive;
  }
  co_return co_await send(
      json_error_response(404, "no such endpoint: " + std::string(path), keep_alive)) &&
      keep_alive;
}

net::awaitable<std::optional<bool>> http_session::refuse(access_policy::verdict verdict,
                                                         bool keep_alive) {
  if (verdict == access_policy::verdict::allowed) co_return std::nullopt;
  record_.ending = "rejected";
  if (verdict == access_policy::verdict::unauthorized) {
    ctx_.stats.refused("unauthorized");
    // The message never says which part was wrong, nor echoes what was sent.
    auto res = json_error_response(
        401, "missing or invalid bearer token in the Authorization header", keep_alive);
    res.set(http::field::www_authenticate, "Bearer");
    co_return co_await send(std::move(res)) && keep_alive;
  }
  ctx_.stats.refused("forbidden");
  co_return co_await send(json_error_response(
      403,
      "this endpoint answers loopback clients only; start glm-proxy with --admin-token to "
      "use it remotely",
      keep_alive)) &&
      keep_alive;
}

net::awaitable<http_session::admission> http_session::admit(bool keep_alive) {
  using namespace net::experimental::awaitable_operators;
  auto& gate = ctx_.inflight;
  admission out;
  // The common case, a free slot, costs one short lock and no coroutine.
  if (auto place = gate.try_acquire()) {
    out.place = std::move(*place);
    co_return out;
  }
  auto outcome = inflight_gate::outcome::full;
  if (ctx_.cfg.queue_timeout > 0) {
    // Wait in line, but not for a client that has gone: its place in line goes to the next one.
    auto wait = seconds(std::min(ctx_.cfg.queue_timeout, max_queue_seconds));
    auto waited = co_await (gate.acquire(wait) || client_departure::wait(stream_.socket()));
    if (waited.index() == 1) {
      ctx_.stats.client_disconnect();
      record_.ending = "client_gone";
      last_status_ = 499;  // nginx's "client closed request"
      out.keep_connection = false;
      co_return out;
    }
    auto& admitted = std::get<0>(waited);
    if (admitted.result == inflight_gate::outcome::admitted) {
      out.place = std::move(admitted.held);
      co_return out;
    }
    outcome = admitted.result;
  }
  bool timed_out = outcome == inflight_gate::outcome::timed_out;
  ctx_.stats.refused(timed_out ? "queue_timeout" : "max_inflight");
  record_.ending = "rejected";
  std::string message =
      timed_out
          ? "no request slot came free within the queue timeout; retry later"
          : "too many requests in flight (limit " + std::to_string(gate.limit()) + "); retry later";
  auto res = json_error_response(503, message, keep_alive);
  res.set(http::field::retry_after, "1");
  out.keep_connection = co_await send(std::move(res)) && keep_alive;
  co_return out;
}

std::string_view http_session::metrics_endpoint(std::string_view path) {
  // Known endpoints only: a label per unknown path would let clients grow the metrics unbounded.
  for (std::string_view known :
       {"/v1/completions", "/v1/chat/completions", "/healthcheck", "/metrics", "/v1/models",
        "/reset_prefix_cache", "/instances/add", "/instances/remove"}) {
    if (path == known) return known;
  }
  return "other";
}

net::awaitable<bool> http_session::send(http::response<http::string_body> res) {
  last_status_ = res.result_int();
  stream_.expires_after(seconds(ctx_.cfg.client_write_timeout));
  auto [ec, n] = co_await http::async_write(stream_, res, use_nothrow);
  co_return !ec;
}

}  // namespace glm::proxy
