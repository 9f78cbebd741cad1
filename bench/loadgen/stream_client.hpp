#pragma once

#include <array>
#include <chrono>
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

 private:
  enum class connection { keep, close };

  boost::asio::awaitable<bool> connect();
  // One request and its whole answer; the outcome goes to stats_.
  boost::asio::awaitable<connection> one_request();
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
