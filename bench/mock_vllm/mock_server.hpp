#pragma once

#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/system/error_code.hpp>

#include "bench/mock_vllm/mock_config.hpp"
#include "bench/mock_vllm/mock_state.hpp"

namespace glm::mock {

// Listens, accepts, and gives each connection its own http_session coroutine on its own strand,
// so --threads > 1 runs sessions in parallel without locking them. Not thread-safe itself: main()
// calls listen() then run() from one thread.
class mock_server {
 public:
  explicit mock_server(mock_config config);

  // Resolves and binds config.host:port, listens, and completes the config (listen_host,
  // listen_port, engine_id). On failure returns the error and a description in `what`.
  boost::system::error_code listen(std::string& what);

  // "HOST:PORT", an IPv6 host in brackets, with the bound port.
  std::string listening_address() const;

  // Serves on config.threads threads until SIGTERM or SIGINT, then returns. Sessions still open
  // are destroyed with the io_context: their sockets close.
  void run();

 private:
  boost::asio::awaitable<void> accept_loop();

  // Declared before io_context_ so that coroutine frames destroyed with it still find them.
  mock_config config_;
  mock_state state_;
  boost::asio::io_context io_context_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::signal_set signals_;
};

}  // namespace glm::mock
