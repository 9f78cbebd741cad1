#pragma once

#include <memory>
#include <thread>
#include <vector>

#include "balancer/balancer.hpp"
#include "proxy/config.hpp"
#include "proxy/config_reload.hpp"
#include "proxy/core/asio.hpp"
#include "proxy/core/inflight_gate.hpp"
#include "proxy/core/proxy_context.hpp"
#include "proxy/core/signal_reader.hpp"
#include "proxy/front/connection_gate.hpp"
#include "proxy/ops/engine_scraper.hpp"
#include "proxy/ops/instance_prober.hpp"

namespace glm::proxy {

// The listening socket and the worker threads. Each worker runs its own io_context; accepted
// connections are dealt to the workers in turn and stay on theirs for life, so a request's client
// socket, upstream sockets and timers share one thread and need no lock. The workers share only the
// balancer and the limits' counters.
//
// Every connection is accepted, also over --max-connections: one that does not fit is answered
// with a 503 and closed rather than left in the kernel's backlog, where the client would hang
// until its own timeout.
class server {
 public:
  // `reread` reads the configuration again for SIGHUP (see config_reload); empty when there is no
  // --config file.
  explicit server(const config& cfg, config_reload::reader reread = {});
  ~server();

  // Binds and listens on cfg.host:cfg.port. Port 0 picks a free port; the line
  // "listening on HOST:PORT", logged at every log level, tells which. With cfg.reuse_port the
  // socket has SO_REUSEPORT and takes the port's new connections from any older glm-proxy
  // listening on it (reuse_port_steering), before that line is logged.
  error_code listen();

  // Serves until SIGINT or SIGTERM, then stops accepting, lets requests in flight finish (up to
  // drain_timeout) and returns the process exit code. SIGHUP reloads the configuration file.
  int run();

 private:
  // The layerwise decode requests' kv_transfer_params, with --metaserver-url or its default.
  void set_metaserver_url(std::uint16_t bound_port);
  net::awaitable<void> accept_loop();
  // SIGHUP reloads; SIGINT or SIGTERM starts the drain, after which signals are not read.
  net::awaitable<void> handle_signals();
  net::awaitable<void> drain();

  const config& cfg_;
  balancer::balancer lb_;
  metrics metrics_;
  // Declared before the workers: the io_contexts' destruction destroys session frames, which
  // give their places back to these.
  connection_gate connections_;
  connection_gate lingering_refusals_;
  connection_gate answering_;  // requests read and not yet answered (http_session)
  inflight_gate inflight_;
  metaserver_registry metaserver_;
  proxy_context ctx_;
  // Before the workers too: the io_contexts' destruction destroys scrape frames still under way,
  // which take themselves off its list.
  engine_scraper scraper_;
  std::vector<std::unique_ptr<net::io_context>> workers_;
  std::vector<net::executor_work_guard<net::io_context::executor_type>> guards_;
  tcp::acceptor acceptor_;
  // Made in the constructor, before listen() prints "listening on" and before the worker
  // threads start: a supervisor that sends SIGTERM as soon as it sees that line must get a drain
  // and exit 0, not the default action (death by the signal).
  signal_reader signals_;
  config_reload reload_;
  instance_prober prober_;
  std::size_t next_worker_ = 0;
};

}  // namespace glm::proxy
