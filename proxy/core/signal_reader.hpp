#pragma once

#include <utility>

#include "proxy/core/asio.hpp"

namespace glm::proxy {

// SIGINT, SIGTERM and SIGHUP as values read from a signalfd on an io_context, never as handlers.
//
// The constructor blocks the three signals in the calling thread; threads started after it
// inherit the mask, so the kernel keeps every such signal for the signalfd until it is read. Why
// not Asio's signal_set: its handler runs asynchronously, and gcc 12's TSan runtime defers such a
// handler to a later intercepted call and, about once in a hundred starts, never runs it (the
// SIGTERM sent as "listening on" is printed was lost, the process slept in epoll_wait). A
// signalfd has no handler to defer, and a signal sent before the first read waits in the kernel.
//
// Construct it before any other thread starts; one per process.
class signal_reader {
 public:
  explicit signal_reader(net::io_context& io);
  signal_reader(const signal_reader&) = delete;
  signal_reader& operator=(const signal_reader&) = delete;

  // The next signal's number, or error() if the signalfd could not be made (the server then
  // refuses to listen: only SIGKILL could stop it).
  net::awaitable<std::pair<error_code, int>> next();

  // Why the signalfd could not be made, if it could not.
  error_code error() const { return error_; }

 private:
  net::posix::stream_descriptor fd_;
  error_code error_;
};

}  // namespace glm::proxy
