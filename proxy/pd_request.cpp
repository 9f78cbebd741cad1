#include "proxy/pd_request.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <array>
#include <cerrno>

#include "protocol/json_error.hpp"
#include "protocol/prefill_result.hpp"
#include "protocol/request_id.hpp"
#include "protocol/request_splicer.hpp"
#include "proxy/chunked_writer.hpp"
#include "proxy/json_response.hpp"
#include "proxy/upstream_exchange.hpp"

namespace glm::proxy {
namespace {

// Relay buffer: one read from the decoder is written to the client before the next read, so a
// slow client slows the decoder instead of growing memory.
constexpr std::size_t relay_buffer_bytes = 8 * 1024;

bool retryable(const error_code& ec, unsigned status) {
  // A 400 is the request's own fault: every instance would refuse it the same way.
  return ec || status != 400;
}

}  // namespace

pd_request::pd_request(proxy_context& ctx, beast::tcp_stream& client,
                       http::request<http::string_body>& req, std::string_view target)
    : ctx_(ctx), client_(client), req_(req), target_(target) {}

net::awaitable<bool> pd_request::run() {
  using namespace net::experimental::awaitable_operators;
  auto outcome = co_await (serve() || watch_client());
  if (outcome.index() == 1) {
    spdlog::info("[{}] client disconnected; upstream closed and load released", request_id_);
    co_return false;
  }
  co_return std::get<0>(outcome);
}

net::awaitable<void> pd_request::watch_client() {
  // Wait for readability without consuming anything: a request in progress has already been read,
  // so the socket becomes readable only when the client closes (or pipelines its next request).
  auto& socket = client_.socket();
  auto [ec] = co_await socket.async_wait(tcp::socket::wait_read, use_nothrow);
  if (ec == net::error::operation_aborted) co_return;  // serve() finished first
  if (!ec) {
    char byte;
    ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))) {
      // Pipelined bytes: the client is still there. Stay out of the way until serve() ends.
      net::steady_timer forever(co_await net::this_coro::executor,
                                std::chrono::steady_clock::time_point::max());
      co_await forever.async_wait(use_nothrow);
      co_return;
    }
  }
  client_gone_ = true;
  if (active_ != nullptr) active_->close();
}

net::awaitable<bool> pd_request::serve() {
  // Cancellation (the client left) must surface as error codes, not exceptions.
  co_await net::this_coro::throw_if_cancelled(false);
  keep_alive_ = req_.keep_alive();
  if (auto error = protocol::request_splicer::parse(req_.body(), parsed_)) {
    co_return co_await send(json_error_response(400, *error, keep_alive_));
  }
  request_id_ = protocol::make_request_id();
  lease_ = ctx_.lb.begin_request(req_.body().size());

  if (auto answered = co_await prefill()) co_return *answered;
  co_return co_await decode();
}

net::awaitable<pd_request::attempt> pd_request::start(upstream_exchange& up,
                                                       const balancer::backend_address& to,
                                                       std::string_view body,
                                                       std::chrono::steady_clock::duration wait) {
  attempt a;
  active_ = &up;
  if (client_gone_) {
    a.ec = net::error::operation_aborted;
    co_return a;
  }
  a.ec = co_await up.connect(to, seconds(ctx_.cfg.connect_timeout));
  if (a.ec) co_return a;

  upstream_exchange::request req{http::verb::post, target_, 11};
  req.set(http::field::host, to.to_string());
  req.set(http::field::content_type, "application/json");
  req.set("X-Request-Id", request_id_);
  if (!ctx_.cfg.backend_api_key.empty()) {
    req.set(http::field::authorization, "Bearer " + ctx_.cfg.backend_api_key);
  }
  req.body() = {body.data(), body.size()};
  req.prepare_payload();
  a.ec = co_await up.send(req, wait);
  if (a.ec) co_return a;
  a.ec = co_await up.read_header(wait);
  if (!a.ec) a.status = up.status();
  co_return a;
}

net::awaitable<bool> pd_request::retry_pause(int attempt_number) {
  // The reference's backoff: retry_delay * 2^(k-1) before retry k.
  double delay = ctx_.cfg.retry_delay * static_cast<double>(1ull << std::min(attempt_number - 1, 30));
  net::steady_timer timer(co_await net::this_coro::executor, seconds(delay));
  co_await timer.async_wait(use_nothrow);
  co_return !client_gone_;
}

net::awaitable<std::optional<bool>> pd_request::prefill() {
  const std::string body = protocol::request_splicer::prefill_body(parsed_);
  const int attempts = std::max(1, ctx_.cfg.max_retries);
  for (int k = 1;; ++k) {
    auto to = lease_.choose_prefiller();
    if (!to) {
      co_return co_await send(
          json_error_response(503, "no prefill instance is available", keep_alive_));
    }
    upstream_exchange up(co_await net::this_coro::executor);
    auto deadline = std::chrono::steady_clock::now() + seconds(ctx_.cfg.prefill_timeout);
    attempt a = co_await start(up, *to, body, seconds(ctx_.cfg.prefill_timeout));
    std::string answer;
    if (!a.ec) a.ec = co_await up.read_body(answer, ctx_.cfg.max_body_bytes, deadline);
    active_ = nullptr;
    if (client_gone_) co_return false;
    if (!a.ec && a.status / 100 == 2) {
      protocol::prefill_result result;
      if (auto error = protocol::prefill_result::parse(answer, result)) {
        co_return co_await send(json_error_response(
            502, "prefill instance " + to->to_string() + " answered invalid JSON: " + *error,
            keep_alive_));
      }
      kv_transfer_params_ = std::move(result.kv_transfer_params);
      co_return std::nullopt;
    }
    spdlog::warn("[{}] prefill attempt {}/{} on {} failed: {}", request_id_, k, attempts,
                 to->to_string(), a.ec ? a.ec.message() : "HTTP " + std::to_string(a.status));
    if (k >= attempts || !retryable(a.ec, a.status)) {
      co_return co_await send_failure("prefill", *to, a, answer);
    }
    if (!co_await retry_pause(k)) co_return false;
  }
}

net::awaitable<bool> pd_request::decode() {
  const std::string body = protocol::request_splicer::decode_body(parsed_, kv_transfer_params_);
  const int attempts = std::max(1, ctx_.cfg.max_retries);
  for (int k = 1;; ++k) {
    auto to = lease_.choose_decoder();
    if (!to) {
      co_return co_await send(
          json_error_response(503, "no decode instance is available", keep_alive_));
    }
    upstream_exchange up(co_await net::this_coro::executor);
    attempt a = co_await start(up, *to, body, seconds(ctx_.cfg.stream_idle_timeout));
    if (!a.ec && a.status / 100 == 2) {
      bool keep = parsed_.stream ? co_await relay_stream(up) : co_await relay_body(up);
      active_ = nullptr;
      co_return keep;
    }
    std::string answer;
    if (!a.ec) {
      // The error body is for the client; a broken one still leaves the status to report.
      auto deadline = std::chrono::steady_clock::now() + seconds(ctx_.cfg.stream_idle_timeout);
      co_await up.read_body(answer, std::min<std::size_t>(ctx_.cfg.max_body_bytes, 1 << 20),
                            deadline);
    }
    active_ = nullptr;
    if (client_gone_) co_return false;
    spdlog::warn("[{}] decode attempt {}/{} on {} failed: {}", request_id_, k, attempts,
                 to->to_string(), a.ec ? a.ec.message() : "HTTP " + std::to_string(a.status));
    if (k >= attempts || !retryable(a.ec, a.status)) {
      co_return co_await send_failure("decode", *to, a, answer);
    }
    if (!co_await retry_pause(k)) co_return false;
  }
}

net::awaitable<bool> pd_request::relay_stream(upstream_exchange& up) {
  http::response<http::empty_body> res{http::status::ok, 11};
  res.set(http::field::server, "glm-proxy");
  res.set(http::field::content_type, "text/event-stream; charset=utf-8");
  res.set(http::field::cache_control, "no-cache");
  res.set("X-Request-Id", request_id_);
  res.keep_alive(keep_alive_);
  chunked_writer writer(client_, seconds(ctx_.cfg.client_write_timeout));
  if (co_await writer.write_header(res)) {
    up.close();
    co_return false;
  }
  std::array<char, relay_buffer_bytes> buffer;
  for (;;) {
    auto [ec, n] =
        co_await up.read_some(buffer.data(), buffer.size(), seconds(ctx_.cfg.stream_idle_timeout));
    if (n > 0) {
      // The decoder has the KV cache now: the prefiller's share of this request is done.
      lease_.release_prefill();
      if (co_await writer.write_chunk({buffer.data(), n})) {
        up.close();  // never leave vLLM generating for a client that is gone
        co_return false;
      }
    }
    if (ec) {
      up.close();
      if (client_gone_) co_return false;
      std::string message =
          ec == beast::error::timeout
              ? "decode instance sent nothing for " +
                    std::to_string(static_cast<long>(ctx_.cfg.stream_idle_timeout)) + " s"
              : "decode instance failed mid-stream: " + ec.message();
      spdlog::warn("[{}] {}", request_id_, message);
      co_return co_await end_stream_with_error(writer, message);
    }
    if (n == 0) break;
  }
  co_return !co_await writer.write_last() && keep_alive_;
}

net::awaitable<bool> pd_request::relay_body(upstream_exchange& up) {
  std::string body;
  auto deadline = std::chrono::steady_clock::now() + seconds(ctx_.cfg.stream_idle_timeout);
  auto ec = co_await up.read_body(body, ctx_.cfg.max_body_bytes, deadline);
  lease_.release_prefill();
  if (ec) {
    up.close();
    if (client_gone_) co_return false;
    unsigned status = ec == beast::error::timeout ? 504 : 502;
    co_return co_await send(json_error_response(
        status, "decode instance failed while answering: " + ec.message(), keep_alive_));
  }
  co_return co_await send(json_response(up.status(), std::move(body), keep_alive_));
}

net::awaitable<bool> pd_request::send_failure(const char* role,
                                              const balancer::backend_address& to,
                                              const attempt& a, const std::string& body) {
  if (a.ec) {
    bool timed_out = a.ec == beast::error::timeout;
    std::string message = std::string(role) + " instance " + to.to_string() +
                          (timed_out ? " timed out: " : " failed: ") + a.ec.message();
    co_return co_await send(json_error_response(timed_out ? 504 : 502, message, keep_alive_));
  }
  co_return co_await send(
      json_response(a.status, protocol::json_error::wrap_upstream(body, a.status), keep_alive_));
}

net::awaitable<bool> pd_request::end_stream_with_error(chunked_writer& writer,
                                                       std::string_view message) {
  // Close a half-sent event first, so the error is an event of its own that clients can parse.
  std::string tail = writer.at_event_boundary() ? "" : "\n\n";
  tail += "data: ";
  tail += protocol::json_error::make(message, protocol::json_error::type_for(502), 502);
  tail += "\n\ndata: [DONE]\n\n";
  if (co_await writer.write_chunk(tail)) co_return false;
  co_return !co_await writer.write_last() && keep_alive_;
}

net::awaitable<bool> pd_request::send(http::response<http::string_body> res) {
  if (!request_id_.empty()) res.set("X-Request-Id", request_id_);
  client_.expires_after(seconds(ctx_.cfg.client_write_timeout));
  auto [ec, n] = co_await http::async_write(client_, res, use_nothrow);
  co_return !ec && keep_alive_;
}

}  // namespace glm::proxy
