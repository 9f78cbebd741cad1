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

namespace {

std::string lowercase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

void add_header(recorded_request& record, std::string name, std::string_view value) {
  for (auto& [known, joined] : record.headers) {
    if (known == name) {
      joined += ", ";
      joined += value;
      return;
    }
  }
  record.headers.emplace_back(std::move(name), std::string(value));
}

}  // namespace

http_session::http_session(tcp::socket socket, const mock_config& config, mock_state& state)
    : socket_(std::move(socket)), config_(config), state_(state) {}

net::awaitable<void> http_session::serve(tcp::socket socket, const mock_config& config,
                                         mock_state& state) {
  http_session session(std::move(socket), config, state);
  co_await session.run();
}

net::awaitable<void> http_session::run() {
  for (;;) {
    request_parser parser;
    parser.header_limit(header_limit);
    parser.body_limit(body_limit);
    const read_result read = co_await read_request(parser);
    if (read == read_result::closed) break;
    if (read == read_result::too_large) {
      co_await write_error(413, "Request header or body too large", false);
      break;
    }
    if (read == read_result::malformed) {
      co_await write_error(400, "Malformed HTTP request", false);
      break;
    }
    request req = parser.release();
    ++served_;
    if (co_await dispatch(req) == next::close) break;
  }
  // Half-close first so the peer reads everything we wrote before it sees the end.
  beast::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
  socket_.close(ignored);
}

net::awaitable<http_session::read_result> http_session::read_request(request_parser& parser) {
  auto classify = [](beast::error_code ec) {
    if (ec == http::error::header_limit || ec == http::error::body_limit ||
        ec == http::error::buffer_overflow) {
      return read_result::too_large;
    }
    // end_of_stream: the peer closed between requests; partial_message: in the middle of one.
    if (ec == http::error::end_of_stream || ec == http::error::partial_message) {
      return read_result::closed;
    }
    if (ec.category() == http::make_error_code(http::error::bad_target).category()) {
      return read_result::malformed;
    }
    return read_result::closed;  // reset, idle timeout, shutdown
  };

  beast::error_code ec;
  if (served_ > 0 && config_.keep_alive_timeout.count() > 0) {
    // Like uvicorn, drop a connection left idle after a response: a pooling proxy must notice and
    // redial. A fresh connection waits for its first request untimed, as in uvicorn, so a slow
    // benchmark client is not cut off before it writes.
    net::steady_timer idle(co_await net::this_coro::executor, config_.keep_alive_timeout);
    auto first = co_await (http::async_read_header(socket_, buffer_, parser, use_tuple) ||
                           idle.async_wait(use_tuple));
    if (first.index() == 1) co_return read_result::closed;
    ec = std::get<0>(std::get<0>(first));
  } else {
    std::tie(ec, std::ignore) =
        co_await http::async_read_header(socket_, buffer_, parser, use_tuple);
  }
  if (ec) co_return classify(ec);

  // curl sends "Expect: 100-continue" before bodies over 1 MiB and waits a second for this.
  if (!parser.is_done() && beast::iequals(parser.get()[http::field::expect], "100-continue")) {
    static constexpr std::string_view go_on = "HTTP/1.1 100 Continue\r\n\r\n";
    std::tie(ec, std::ignore) = co_await net::async_write(socket_, net::buffer(go_on), use_tuple);
    if (ec) co_return read_result::closed;
  }
  if (!parser.is_done()) {
    std::tie(ec, std::ignore) = co_await http::async_read(socket_, buffer_, parser, use_tuple);
    if (ec) co_return classify(ec);
  }
  co_return read_result::ok;
}

net::awaitable<http_session::next> http_session::dispatch(request& req) {
  const std::string_view target = req.target();
  const std::string_view path = target.substr(0, target.find('?'));
  if (path.starts_with("/mock/")) co_return co_await answer_mock_endpoint(req, path);
  // Not recorded either: a proxy may scrape it every 100 ms, which would crowd out the records.
  if (path == "/metrics") {
    if (req.method() != http::verb::get)
      co_return co_await write_error(405, "Method Not Allowed", req.keep_alive());
    co_return co_await answer_metrics(req.keep_alive());
  }

  recorded_request record;
  record.method = std::string(req.method_string());
  record.target = std::string(target);
  for (const auto& field : req) add_header(record, lowercase(field.name_string()), field.value());
  record.body = std::move(req.body());
  record.received_at = std::chrono::system_clock::now();
  // The record keeps the only copy of the body; hold it while the answer is built from it.
  const auto recorded = state_.record(std::move(record));

  const bool keep_alive = req.keep_alive();
  const http::verb method = req.method();
  if (path == "/v1/completions" || path == "/v1/chat/completions") {
    if (method != http::verb::post)
      co_return co_await write_error(405, "Method Not Allowed", keep_alive);
    co_return co_await answer_completion(req, recorded->body, path == "/v1/chat/completions");
  }
  if (path == "/v1/models") {
    if (method != http::verb::get)
      co_return co_await write_error(405, "Method Not Allowed", keep_alive);
    std::string body = "{\"object\":\"list\",\"data\":[{\"id\":";
    json_text::append_quoted(body, config_.model);
    body += ",\"object\":\"model\",\"owned_by\":\"vllm\",\"max_model_len\":32768}]}";
    co_return co_await write_response(200, "application/json", std::move(body), keep_alive);
  }
  if (path == "/health") {
    if (method != http::verb::get)
      co_return co_await write_error(405, "Method Not Allowed", keep_alive);
    co_return co_await write_response(200, "", "", keep_alive);
  }
  if (path == "/reset_prefix_cache") {
    if (method != http::verb::post)
      co_return co_await write_error(405, "Method Not Allowed", keep_alive);
    state_.cache().clear();
    co_return co_await write_response(200, "", "", keep_alive);
  }
  co_return co_await write_error(404, "Not Found", keep_alive);
}

net::awaitable<http_session::next> http_session::answer_completion(const request& req,
                                                                   std::string_view body,
                                                                   bool chat) {
  const bool keep_alive = req.keep_alive();
  std::string error;
  const auto parsed = completion_request::parse(body, chat, error);
  if (parsed) state_.count_role(parsed->role);
  if (config_.fail_status != 0) {
    co_return co_await write_error(static_cast<unsigned>(config_.fail_status),
                                   "mock-vllm: failure injected by --fail-status", keep_alive);
  }
  if (!parsed) co_return co_await write_error(400, error, keep_alive);

  // The mock's own tokenizer and chat template (prompt_renderer): the prompt is counted in
  // bytes, and hashed in blocks for the prefix cache. A decoder counts the same way, so its usage
  // agrees with the prefiller's, but has no prefill to look up.
  completion_request completion = *parsed;
  std::vector<std::uint64_t> blocks;
  if (config_.counts_chars()) {
    std::string text;
    prompt_renderer::render(body, chat, text);
    const auto bytes = static_cast<std::int64_t>(text.size());
    completion.prompt_tokens =
        std::max<std::int64_t>(1, (bytes + config_.chars_per_token - 1) / config_.chars_per_token);
    if (config_.prefix_cache_blocks != 0 && completion.role != request_role::decode) {
      blocks = prefix_cache::block_hashes(
          text, static_cast<std::size_t>(config_.block_size * config_.chars_per_token));
    }
  }

  const std::string_view header_id = req["X-Request-Id"];
  const std::string id = header_id.empty() ? state_.next_request_id() : std::string(header_id);
  const completion_bodies bodies(config_, chat, id);
  if (completion.role == request_role::prefill) {
    co_return co_await answer_prefill(completion, blocks, bodies, keep_alive);
  }
  co_return co_await answer_generation(completion, blocks, bodies, id, keep_alive);
}

net::awaitable<std::optional<std::int64_t>> http_session::simulate_prefill(
    const completion_request& parsed, const std::vector<std::uint64_t>& blocks) {
  const auto started = std::chrono::steady_clock::now();
  prefill_gate::slot slot = co_await state_.gate().acquire(watch_peer());
  if (!slot) {
    state_.count_client_disconnect();
    co_return std::nullopt;
  }
  const std::int64_t prompt_tokens = parsed.prompt_tokens;
  const mock_state::busy busy(state_,
                              (prompt_tokens + config_.block_size - 1) / config_.block_size);
  std::int64_t cached = config_.cached_tokens;
  if (config_.prefix_cache_blocks != 0) {
    // vLLM always computes the prompt's last token (it needs its logits), so a hit covers at
    // most the full blocks before it.
    const auto most = static_cast<std::size_t>((prompt_tokens - 1) / config_.block_size);
    cached = static_cast<std::int64_t>(state_.cache().match(blocks, most)) * config_.block_size;
  }
  const std::int64_t uncached = std::max<std::int64_t>(0, prompt_tokens - cached);
  const std::chrono::steady_clock::duration delay =
      config_.prefill_delay + std::chrono::microseconds(config_.prefill_us_per_token * uncached);
  if (!co_await sleep_watched(delay)) co_return std::nullopt;
  // Only now: a concurrent identical request that started before this one finished misses.
  state_.cache().insert(blocks);
  state_.count_prefill(prompt_tokens, cached, std::chrono::steady_clock::now() - started);
  co_return cached;
}

net::awaitable<http_session::next> http_session::answer_prefill(
    const completion_request& parsed, const std::vector<std::uint64_t>& blocks,
    const completion_bodies& bodies, bool keep_alive) {
  const std::string_view fault = parsed.fault;
  if (fault == "prefill_error") {
    co_return co_await write_error(500, "mock-vllm: prefill failure injected", keep_alive);
  }
  if (fault == "prefill_text_error") {
    co_return co_await write_response(502, "text/plain", "bad gateway", keep_alive);
  }
  if (fault == "prefill_hang") co_return co_await hang();
  if (fault == "prefill_garbage") co_return co_await write_garbage();
  if (fault == "prefill_reset") co_return reset();
  if (fault == "prefill_bad_json") {
    co_return co_await write_response(200, "application/json", "<html>not json</html>", keep_alive);
  }
  const std::optional<std::int64_t> cached = co_await simulate_prefill(parsed, blocks);
  if (!cached) co_return next::close;
  if (fault == "prefill_hang_body") {
    co_return co_await write_partial(bodies.prefill(parsed.prompt_tokens, *cached, true), false);
  }
  co_return co_await write_response(
      200, "application/json",
      bodies.prefill(parsed.prompt_tokens, *cached, fault != "prefill_no_kv"), keep_alive);
}

net::awaitable<http_session::next> http_session::answer_generation(
    const completion_request& parsed, const std::vector<std::uint64_t>& blocks,
    const completion_bodies& bodies, std::string_view request_id, bool keep_alive) {
  const std::string_view fault = parsed.fault;
  if (fault == "decode_error") {
    co_return co_await write_error(400, "This model's maximum context length is 32 tokens.",
                                   keep_alive);
  }
  // vLLM refuses a request like decode_error's before scheduling it; a scheduled one gets its
  // blocks, and only then does the layerwise connector call the metaserver.
  if (config_.layerwise && parsed.role == request_role::decode && !parsed.metaserver.empty()) {
    if (parsed.prompts > max_layerwise_prompts) {
      co_return co_await write_error(
          400, "mock-vllm: more than " + std::to_string(max_layerwise_prompts) + " prompts",
          keep_alive);
    }
    if (!co_await receive_layerwise_kv(parsed, request_id)) co_return next::close;
  }
  // Faults before the status line, streaming or not.
  if (fault == "decode_garbage") co_return co_await write_garbage();
  if (fault == "decode_reset") co_return reset();
  if (fault == "decode_hang_headers") co_return co_await hang();
  if (fault == "decode_bad_header") {
    static constexpr std::string_view head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nthis is no header\r\n\r\n";
    co_await net::async_write(socket_, net::buffer(head), use_tuple);
    co_return next::close;
  }
  // A plain instance prefills by itself; a decoder received the KV cache and starts at once, and
  // counts it as cached: the figure the proxy must overwrite with the prefiller's.
  std::int64_t cached = parsed.prompt_tokens;
  if (parsed.role == request_role::plain) {
    const std::optional<std::int64_t> prefilled = co_await simulate_prefill(parsed, blocks);
    if (!prefilled) co_return next::close;
    cached = *prefilled;
  }
  const mock_state::busy busy(state_,
                              (parsed.prompt_tokens + config_.block_size - 1) / config_.block_size);
  if (parsed.stream) co_return co_await answer_stream(parsed, cached, bodies, keep_alive);

  // Non-stream faults: decode_hang never answers; decode_cut closes without an answer halfway;
  // recompute answers half the tokens as a preempted request.
  if (fault == "decode_hang") co_return co_await hang();
  const generation plan = plan_generation(parsed);
  if (!co_await sleep_watched(config_.token_interval * plan.tokens)) co_return next::close;
  if (fault == "decode_cut") co_return next::close;
  if (fault == "decode_hang_body" || fault == "decode_reset_mid") {
    co_return co_await write_partial(
        bodies.full(parsed.prompt_tokens, plan.first, plan.tokens, parsed.prompt_tokens, false),
        fault == "decode_reset_mid");
  }
  if (!plan.preempted) state_.count_generation(plan.tokens);
  co_return co_await write_response(
      200, "application/json",
      bodies.full(parsed.prompt_tokens, plan.first, plan.tokens, cached, plan.preempted),
      keep_alive);
}

net::awaitable<http_session::next> http_session::write_response(unsigned status,
                                                                std::string_view content_type,
                                                                std::string body, bool keep_alive) {
  http::response<http::string_body> res;
  res.version(11);
  res.result(status);
  res.set(http::field::server, "mock-vllm");
  if (!content_type.empty()) res.set(http::field::content_type, content_type);
  res.body() = std::move(body);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  auto [ec, written] = co_await http::async_write(socket_, res, use_tuple);
  co_return !ec && keep_alive ? next::keep_alive : next::close;
}

net::awaitable<http_session::next> http_session::write_error(unsigned status,
                                                             std::string_view message,
                                                             bool keep_alive) {
  co_return co_await write_response(status, "application/json",
                                    completion_bodies::error(message, static_cast<int>(status)),
                                    keep_alive);
}

net::awaitable<bool> http_session::sleep_watched(std::chrono::steady_clock::duration delay) {
  if (delay.count() <= 0) co_return true;
  net::steady_timer timer(co_await net::this_coro::executor, delay);
  const auto winner = co_await (timer.async_wait(use_tuple) || watch_peer());
  if (winner.index() == 0) co_return true;
  state_.count_client_disconnect();
  co_return false;
}

net::awaitable<void> http_session::watch_peer() {
  for (;;) {
    // A client that pipelines more than a header's worth is not read further until the answer
    // is done; the peer closing then goes unseen, which no real client does.
    if (buffer_.size() >= header_limit) {
      co_await sleep_forever();
      co_return;
    }
    auto [ec, n] = co_await socket_.async_read_some(buffer_.prepare(4096), use_tuple);
    if (ec) co_return;  // EOF or reset: the peer is gone (or we were cancelled: nobody listens)
    buffer_.commit(n);
  }
}

}  // namespace glm::mock
