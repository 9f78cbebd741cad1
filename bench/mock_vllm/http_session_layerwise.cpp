// http_session, part: a layerwise decoder calls the metaserver back before it streams.
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

// The outstanding metaserver calls of one decode request. Shared by the calls and the waiting
// session, all on the session's strand, so unguarded.
struct callback_latch {
  explicit callback_latch(const net::any_io_executor& executor, std::size_t calls)
      : done(executor, net::steady_timer::time_point::max()), pending(calls), all_ok(true) {}
  net::steady_timer done;  // cancelled when the last call ends
  std::size_t pending;
  bool all_ok;
};

// One call, detached from the session: like the connector's executor thread, it goes on (and is
// recorded) even if the decode request is gone.
net::awaitable<void> make_call(std::shared_ptr<callback_latch> latch, mock_state& state,
                               metaserver_call call, std::chrono::milliseconds timeout) {
  call.answer = co_await metaserver_client::post(call.url, call.body, timeout);
  if (call.answer.status / 100 != 2) latch->all_ok = false;
  state.record_metaserver_call(std::move(call));
  if (--latch->pending == 0) latch->done.cancel();
}

}  // namespace

net::awaitable<bool> http_session::receive_layerwise_kv(const completion_request& parsed,
                                                        std::string_view request_id) {
  const auto executor = co_await net::this_coro::executor;
  const auto prompts = static_cast<std::size_t>(std::max<std::int64_t>(1, parsed.prompts));
  auto latch = std::make_shared<callback_latch>(executor, prompts);
  // Each prompt's share of the prompt's tokens, in blocks, as the decoder allocates them.
  const std::int64_t tokens =
      std::max<std::int64_t>(1, parsed.prompt_tokens / static_cast<std::int64_t>(prompts));
  const std::int64_t blocks = (tokens + config_.block_size - 1) / config_.block_size;
  for (std::size_t i = 0; i < prompts; ++i) {
    metaserver_call call;
    call.request_id = parsed.chat ? "chatcmpl-" + std::string(request_id)
                                  : "cmpl-" + std::string(request_id) + "-" + std::to_string(i);
    call.url = parsed.metaserver;
    // The connector's dict, in its order (token_ids is always empty there).
    std::string& body = call.body;
    body = "{\"token_ids\":[],\"request_id\":";
    json_text::append_quoted(body, call.request_id);
    body += ",\"do_remote_prefill\":false,\"do_remote_decode\":true,\"remote_block_ids\":[[";
    const std::int64_t first = state_.allocate_blocks(blocks) - blocks;
    for (std::int64_t b = 0; b < blocks; ++b) {
      if (b > 0) body += ',';
      body += std::to_string(first + b);
    }
    body += "]],\"remote_block_size\":[" + std::to_string(config_.block_size) +
            "],\"remote_engine_id\":";
    json_text::append_quoted(body, config_.engine_id);
    body += ",\"remote_host\":";
    json_text::append_quoted(body, config_.listen_host);
    body += ",\"remote_port\":" + std::to_string(config_.listen_port) +
            ",\"remote_tp_size\":1,\"remote_pcp_size\":1,\"remote_dcp_size\":1,"
            "\"remote_cached_tokens\":0}";
    net::co_spawn(executor, make_call(latch, state_, std::move(call), config_.metaserver_timeout),
                  net::detached);
  }
  // The calls run on this strand too, so none can end between the test and the wait.
  while (latch->pending > 0) {
    const auto winner = co_await (latch->done.async_wait(use_tuple) || watch_peer());
    if (winner.index() == 1) {
      state_.count_client_disconnect();
      co_return false;
    }
  }
  if (latch->all_ok) co_return true;
  // The connector never reads the metaserver's answer: the KV cache simply never arrives.
  co_await hang();
  co_return false;
}

}  // namespace glm::mock
