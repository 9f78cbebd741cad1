// http_session, part: generating tokens, as one JSON body or as SSE events (paced or in a burst).
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

net::awaitable<http_session::next> http_session::answer_stream(const completion_request& parsed,
                                                               std::int64_t cached,
                                                               const completion_bodies& bodies,
                                                               bool keep_alive) {
  http::response<http::empty_body> res{http::status::ok, 11};
  res.set(http::field::server, "mock-vllm");
  res.set(http::field::content_type, "text/event-stream; charset=utf-8");
  res.chunked(true);
  res.keep_alive(keep_alive);
  http::response_serializer<http::empty_body> serializer{res};
  auto [ec, written] = co_await http::async_write_header(socket_, serializer, use_tuple);
  if (ec) {
    state_.count_client_disconnect();
    co_return next::close;
  }

  state_.stream_started();
  burst_.clear();
  stream_end end = stream_end::complete;
  const auto winner = co_await (emit_tokens(parsed, cached, bodies, end) || watch_peer());
  state_.stream_ended();
  if (winner.index() == 1 || end == stream_end::write_failed) {
    state_.count_client_disconnect();
    co_return next::close;
  }
  if (end == stream_end::cut) co_return next::close;  // no [DONE], no last chunk
  co_return keep_alive ? next::keep_alive : next::close;
}

net::awaitable<void> http_session::emit_tokens(const completion_request& parsed,
                                               std::int64_t cached, const completion_bodies& bodies,
                                               stream_end& end) {
  const std::string_view fault = parsed.fault;
  const std::int64_t n = parsed.max_tokens;
  const generation plan = plan_generation(parsed);

  net::steady_timer timer(co_await net::this_coro::executor);
  for (std::int64_t i = 0; i < plan.tokens; ++i) {
    if (config_.token_interval.count() > 0) {
      timer.expires_after(config_.token_interval);
      auto [ec] = co_await timer.async_wait(use_tuple);
      if (ec) co_return;  // cancelled: the peer left and watch_peer() won
    }
    // A preempted stream's last token is not the last: finish_reason stays null.
    const bool last = !plan.preempted && i + 1 == n;
    if (!co_await write_chunk(bodies.token_event(plan.first + i, last))) {
      end = stream_end::write_failed;
      co_return;
    }
  }
  if (plan.preempted) {
    // As vLLM's recompute scheduler ends it: the recomputed chunk, then [DONE], no usage.
    if (!co_await write_chunk(bodies.recomputed_event()) ||
        !co_await write_chunk(completion_bodies::done_event)) {
      end = stream_end::write_failed;
      co_return;
    }
    co_await write_last_chunk(end);
    co_return;
  }
  if (fault == "decode_hang" || fault == "decode_cut" || fault == "decode_reset_mid" ||
      fault == "decode_bad_chunk") {
    // The tokens before the fault are sent before it, burst or not.
    if (!co_await flush_burst()) {
      end = stream_end::write_failed;
      co_return;
    }
  }
  if (fault == "decode_hang") {
    co_await sleep_forever();  // until watch_peer() sees the peer leave and cancels this
    co_return;
  }
  if (fault == "decode_cut") {
    end = stream_end::cut;
    co_return;
  }
  if (fault == "decode_reset_mid") {
    end = stream_end::cut;
    reset();
    co_return;
  }
  if (fault == "decode_bad_chunk") {
    // A chunk-size line that is not hex: the chunked framing breaks mid-stream.
    static constexpr std::string_view bad = "zz\r\ndata: broken\r\n";
    co_await net::async_write(socket_, net::buffer(bad), use_tuple);
    end = stream_end::cut;
    co_return;
  }
  if (parsed.include_usage) {
    if (!co_await write_chunk(bodies.usage_event(parsed.prompt_tokens, n, cached))) {
      end = stream_end::write_failed;
      co_return;
    }
  }
  if (!co_await write_chunk(completion_bodies::done_event)) {
    end = stream_end::write_failed;
    co_return;
  }
  state_.count_generation(n);
  co_await write_last_chunk(end);
}

net::awaitable<void> http_session::write_last_chunk(stream_end& end) {
  static constexpr std::string_view last_chunk = "0\r\n\r\n";
  if (config_.burst) {
    burst_ += last_chunk;
    if (!co_await flush_burst()) end = stream_end::write_failed;
    co_return;
  }
  auto [ec, written] = co_await net::async_write(socket_, net::buffer(last_chunk), use_tuple);
  if (ec) end = stream_end::write_failed;
}

net::awaitable<bool> http_session::flush_burst() {
  if (burst_.empty()) co_return true;
  auto [ec, written] = co_await net::async_write(socket_, net::buffer(burst_), use_tuple);
  burst_.clear();
  co_return !ec;
}

http_session::generation http_session::plan_generation(const completion_request& parsed) {
  const std::string_view fault = parsed.fault;
  const std::int64_t n = parsed.max_tokens;
  if (fault == "decode_cut") return {0, n / 2, false};
  if (fault == "decode_hang" || fault == "decode_reset_mid" || fault == "decode_bad_chunk") {
    return {0, std::min<std::int64_t>(n, 1), false};
  }
  if (fault == "recompute") {
    // No generated tokens in the prompt yet: this is the first decode, which gets preempted
    // halfway. Otherwise it is the proxy's re-prefilled continuation and carries on the numbering.
    if (parsed.tok_words == 0) return {0, std::max<std::int64_t>(1, n / 2), true};
    return {parsed.tok_words, n, false};
  }
  return {0, n, false};
}

net::awaitable<bool> http_session::write_chunk(std::string_view data) {
  char size[20];
  const int size_len = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  if (config_.burst) {
    burst_.append(size, static_cast<std::size_t>(size_len)).append(data).append("\r\n");
    co_return true;
  }
  const std::array<net::const_buffer, 3> chunk{net::buffer(size, static_cast<size_t>(size_len)),
                                               net::buffer(data), net::buffer("\r\n", 2)};
  auto [ec, written] = co_await net::async_write(socket_, chunk, use_tuple);
  co_return !ec;
}

}  // namespace glm::mock
