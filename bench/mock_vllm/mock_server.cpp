#include "bench/mock_vllm/mock_server.hpp"

#include <chrono>
#include <thread>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "bench/mock_vllm/http_session.hpp"

namespace glm::mock {

namespace net = boost::asio;
using tcp = net::ip::tcp;

mock_server::mock_server(mock_config config)
    : config_(std::move(config)),
      state_(config_),
      io_context_(config_.threads),
      acceptor_(io_context_),
      signals_(io_context_, SIGINT, SIGTERM) {}

boost::system::error_code mock_server::listen(std::string& what) {
  boost::system::error_code ec;
  tcp::resolver resolver(io_context_);
  const auto results =
      resolver.resolve(config_.host, std::to_string(config_.port), tcp::resolver::passive, ec);
  if (ec || results.empty()) {
    what = "cannot resolve " + config_.host;
    return ec ? ec : net::error::host_not_found;
  }
  const tcp::endpoint endpoint = results.begin()->endpoint();
  what = "cannot listen on " + endpoint.address().to_string();
  if (acceptor_.open(endpoint.protocol(), ec)) return ec;
  if (acceptor_.set_option(tcp::acceptor::reuse_address(true), ec)) return ec;
  if (acceptor_.bind(endpoint, ec)) return ec;
  // A benchmark opens thousands of connections at once; a short backlog would refuse them.
  if (acceptor_.listen(net::socket_base::max_listen_connections, ec)) return ec;

  const tcp::endpoint bound = acceptor_.local_endpoint(ec);
  if (ec) return ec;
  config_.listen_host = bound.address().to_string();
  config_.listen_port = bound.port();
  if (config_.engine_id.empty()) config_.engine_id = "mock-" + std::to_string(bound.port());
  what.clear();
  return {};
}

std::string mock_server::listening_address() const {
  const bool v6 = config_.listen_host.find(':') != std::string::npos;
  return (v6 ? "[" + config_.listen_host + "]" : config_.listen_host) + ":" +
         std::to_string(config_.listen_port);
}

void mock_server::run() {
  signals_.async_wait([this](const boost::system::error_code& ec, int) {
    if (!ec) io_context_.stop();
  });
  net::co_spawn(io_context_, accept_loop(), net::detached);

  std::vector<std::thread> workers;
  for (int i = 1; i < config_.threads; ++i) workers.emplace_back([this] { io_context_.run(); });
  io_context_.run();
  for (auto& worker : workers) worker.join();
  // Before ~io_context destroys the sessions' coroutines (and their timers).
  state_.gate().close();
}

net::awaitable<void> mock_server::accept_loop() {
  net::steady_timer backoff(io_context_);
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(
        net::any_io_executor(net::make_strand(io_context_)), net::as_tuple(net::use_awaitable));
    if (ec == net::error::operation_aborted) co_return;
    if (ec) {
      // Out of descriptors (EMFILE) or similar: retrying at once would spin the loop.
      backoff.expires_after(std::chrono::milliseconds(10));
      co_await backoff.async_wait(net::as_tuple(net::use_awaitable));
      continue;
    }
    // Each SSE event is a small write that must leave at once, not wait for Nagle.
    socket.set_option(tcp::no_delay(true), ec);
    const auto executor = socket.get_executor();
    net::co_spawn(executor, http_session::serve(std::move(socket), config_, state_), net::detached);
  }
}

}  // namespace glm::mock
