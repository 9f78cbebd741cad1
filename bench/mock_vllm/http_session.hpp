#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "bench/mock_vllm/completion_bodies.hpp"
#include "bench/mock_vllm/completion_request.hpp"
#include "bench/mock_vllm/mock_config.hpp"
#include "bench/mock_vllm/mock_state.hpp"

namespace glm::mock {

// One HTTP/1.1 connection: reads requests one after another (keep-alive), answers each as a vLLM
// instance would, and records them in mock_state. Runs as one coroutine on the socket's strand;
// while it waits or streams, a second coroutine on the same strand reads the socket so that a
// peer that goes away is seen at once and the generation stops, as vLLM aborts the sequence.
class http_session {
 public:
  // The session lives on this coroutine's frame; `config` and `state` must outlive it.
  static boost::asio::awaitable<void> serve(boost::asio::ip::tcp::socket socket,
                                            const mock_config& config, mock_state& state);

  static constexpr std::uint32_t header_limit = 64 * 1024;
  static constexpr std::uint64_t body_limit = std::uint64_t{64} << 20;
  // Prompts of one layerwise decode request: each is a concurrent metaserver call.
  static constexpr std::int64_t max_layerwise_prompts = 1024;

 private:
  using request = boost::beast::http::request<boost::beast::http::string_body>;
  using request_parser = boost::beast::http::request_parser<boost::beast::http::string_body>;

  enum class read_result { ok, closed, too_large, malformed };
  enum class next { keep_alive, close };
  // How the token-emitting half of a stream ended.
  enum class stream_end { complete, cut, write_failed };

  // The tokens a generation emits: " tok<first>" onwards, `tokens` of them; `preempted` ends it
  // with a "recomputed" stop instead of finish_reason "length".
  struct generation {
    std::int64_t first = 0;
    std::int64_t tokens = 0;
    bool preempted = false;
  };
  static generation plan_generation(const completion_request& parsed);

  http_session(boost::asio::ip::tcp::socket socket, const mock_config& config, mock_state& state);

  boost::asio::awaitable<void> run();
  boost::asio::awaitable<read_result> read_request(request_parser& parser);
  boost::asio::awaitable<next> dispatch(request& req);
  boost::asio::awaitable<next> answer_mock_endpoint(const request& req, std::string_view path);
  boost::asio::awaitable<next> answer_metrics(bool keep_alive);
  boost::asio::awaitable<next> answer_load(const request& req);
  boost::asio::awaitable<next> answer_completion(const request& req, std::string_view body,
                                                 bool chat);
  // `blocks`: the prompt's prefix-cache block hashes (empty without a cache).
  boost::asio::awaitable<next> answer_prefill(const completion_request& parsed,
                                              const std::vector<std::uint64_t>& blocks,
                                              const completion_bodies& bodies, bool keep_alive);
  // `request_id`: the request's X-Request-Id (or the mock's own), as vLLM names it.
  boost::asio::awaitable<next> answer_generation(const completion_request& parsed,
                                                 const std::vector<std::uint64_t>& blocks,
                                                 const completion_bodies& bodies,
                                                 std::string_view request_id, bool keep_alive);
  // The layerwise connector's part of a decode (--layerwise): POSTs one callback per engine
  // request ("cmpl-<id>-<i>", "chatcmpl-<id>") to parsed.metaserver, all at once, and waits for
  // every answer. True when all were 2xx: the KV cache is in, decoding may start. False when the
  // peer left meanwhile (counted); any other outcome waits, as the connector does, for KV that
  // never comes, until the peer leaves (counted), and is false too.
  boost::asio::awaitable<bool> receive_layerwise_kv(const completion_request& parsed,
                                                    std::string_view request_id);
  // `cached`: usage.prompt_tokens_details.cached_tokens of the answer.
  boost::asio::awaitable<next> answer_stream(const completion_request& parsed, std::int64_t cached,
                                             const completion_bodies& bodies, bool keep_alive);
  boost::asio::awaitable<void> emit_tokens(const completion_request& parsed, std::int64_t cached,
                                           const completion_bodies& bodies, stream_end& end);
  // The prefill itself, as vLLM runs it: waits for a slot of the prefill gate (FIFO), looks the
  // prompt up in the prefix cache, takes --prefill-delay-ms plus --prefill-us-per-token per
  // uncached token, then caches the prompt's blocks. Returns the cached tokens, or nullopt if
  // the peer left meanwhile (already counted).
  boost::asio::awaitable<std::optional<std::int64_t>> simulate_prefill(
      const completion_request& parsed, const std::vector<std::uint64_t>& blocks);

  // A complete response with Content-Length. An empty content_type sends none.
  boost::asio::awaitable<next> write_response(unsigned status, std::string_view content_type,
                                              std::string body, bool keep_alive);
  boost::asio::awaitable<next> write_error(unsigned status, std::string_view message,
                                           bool keep_alive);
  // One HTTP chunk; false if the peer is gone. With --burst it is only queued in burst_.
  boost::asio::awaitable<bool> write_chunk(std::string_view data);
  // With --burst, writes the chunks queued so far in one write; false if the peer is gone.
  boost::asio::awaitable<bool> flush_burst();
  // The zero-length chunk that ends a chunked body; sets `end` if the write fails.
  boost::asio::awaitable<void> write_last_chunk(stream_end& end);

  // Sleeps `delay` while watching the peer; false if the peer left first (already counted).
  boost::asio::awaitable<bool> sleep_watched(std::chrono::steady_clock::duration delay);
  // Completes when the peer closes or resets the connection. Bytes it sends meanwhile (a
  // pipelined request) are kept in buffer_ for the next read.
  boost::asio::awaitable<void> watch_peer();
  // A fault that never answers: waits for the peer to leave, and counts it.
  boost::asio::awaitable<next> hang();
  // Faults of a broken backend: non-HTTP bytes then a close; a TCP reset; a response whose
  // Content-Length promises `body` but only half of it comes, then a hang or a reset.
  boost::asio::awaitable<next> write_garbage();
  next reset();
  boost::asio::awaitable<next> write_partial(std::string body, bool then_reset);
  static boost::asio::awaitable<void> sleep_forever();

  boost::asio::ip::tcp::socket socket_;
  boost::beast::flat_buffer buffer_;
  const mock_config& config_;
  mock_state& state_;
  std::uint64_t served_ = 0;  // requests read on this connection
  std::string burst_;         // --burst: the stream's chunks not written yet
};

}  // namespace glm::mock
