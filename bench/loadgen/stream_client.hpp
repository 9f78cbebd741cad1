#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "bench/loadgen/loadgen_config.hpp"
#include "bench/loadgen/run_control.hpp"
#include "bench/loadgen/run_stats.hpp"

namespace glm::loadgen {

// One simulated client: one keep-alive connection, one streaming request at a time. In the
// closed loop it sends the next request as soon as the previous answer ended; in hold mode it
// sends one and keeps that stream open to its end. Runs as one coroutine on its io_context's
// thread; `config`, the request bytes, `stats` and `control` must outlive it.
class stream_client {
 public:
  using clock = std::chrono::steady_clock;

  stream_client(boost::asio::io_context& ioc, const loadgen_config& config, const target& to,
                std::string_view head, std::string_view body, run_stats& stats,
                run_control& control);

  boost::asio::awaitable<void> run_closed_loop();
  // Waits `start_delay` (to spread connects), then one request.
  boost::asio::awaitable<void> run_hold(clock::duration start_delay);

  // What one turn of a conversation got back.
  struct turn_result {
    bool ok = false;                  // a 200 that passed every check of sse_stream_checker
    std::string text;                 // the streamed text, JSON escapes as they came
    std::int64_t prompt_tokens = -1;  // from the usage chunk; -1 if none
    std::int64_t cached_tokens = -1;
  };
  // One request of the given bytes on this client's connection, connecting first if needed. The
  // outcome also goes to stats (usage included); the bytes need live only until it returns.
  boost::asio::awaitable<turn_result> run_turn(std::string_view head, std::string_view body);

 private:
  enum class connection { keep, close };

  boost::asio::awaitable<bool> connect();
  // One request and its whole answer; the outcome goes to stats_, and to `out` if given.
  boost::asio::awaitable<connection> one_request(std::string_view head, std::string_view body,
                                                 turn_result* out);
  void close();

  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  const loadgen_config& config_;
  const target& to_;
  std::string_view head_;
  std::string_view body_;
  run_stats& stats_;
  run_control& control_;
  // Body bytes of one read; small because hold mode keeps thousands of clients.
  std::array<char, 8 * 1024> read_buffer_;
};

}  // namespace glm::loadgen
