#include "proxy/core/signal_reader.hpp"

#include <pthread.h>
#include <sys/signalfd.h>

#include <csignal>

namespace glm::proxy {

signal_reader::signal_reader(net::io_context& io) : fd_(io) {
  sigset_t handled;
  sigemptyset(&handled);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&handled, s);
  if (int e = pthread_sigmask(SIG_BLOCK, &handled, nullptr); e != 0) {
    error_ = error_code(e, boost::system::system_category());
    return;
  }
  int fd = ::signalfd(-1, &handled, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) {
    error_ = error_code(errno, boost::system::system_category());
    return;
  }
  fd_.assign(fd, error_);
}

net::awaitable<std::pair<error_code, int>> signal_reader::next() {
  if (error_) co_return std::pair{error_, 0};
  signalfd_siginfo info{};
  // The kernel hands out whole records only.
  auto [ec, n] = co_await net::async_read(fd_, net::buffer(&info, sizeof info), use_nothrow);
  if (ec) co_return std::pair{ec, 0};
  co_return std::pair{error_code{}, static_cast<int>(info.ssi_signo)};
}

}  // namespace glm::proxy
