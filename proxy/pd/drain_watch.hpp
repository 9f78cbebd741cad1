#pragma once

#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <vector>

#include "proxy/core/asio.hpp"

namespace glm::proxy {

// Ends the requests still running when --drain-timeout runs out after SIGTERM or SIGINT, as any
// other failure ends them (a stream gets the SSE error event, [DONE] and a properly ended body;
// the access line says drain_timeout), rather than leaving the process's stop to cut them
// silently.
//
// One per worker io_context, as an Asio service. The server calls begin() when the drain starts;
// the moment is one for the whole process: the requests are ended a margin before the server's
// deadline, which gives them time to write their last bytes; their leases go back and the server
// then sees nothing in flight and stops as usual.
//
// A watch is used by one thread only (its io_context's); no lock.
class drain_watch : public net::execution_context::service {
 public:
  using key_type = drain_watch;
  static inline net::execution_context::id id;

  explicit drain_watch(net::execution_context& owner) : service(owner) {}

  // The watch of the io_context behind `ex`.
  static drain_watch& of(const net::any_io_executor& ex);

  // The drain has started (any thread): the requests on every worker still running shortly
  // before `drain_timeout` seconds from now are ended then.
  static void begin(const std::vector<std::unique_ptr<net::io_context>>& workers,
                    double drain_timeout);

  using watcher_list = std::list<std::function<void()>>;

  // A request's place on the watch: `on_expiry` is called once if the drain runs out while the
  // registration lives. Move-only; leaves the watch when destroyed.
  //
  // It shares the list with the watch: a request still running when the workers stop is
  // destroyed with its io_context's pending handlers, after this service's shutdown(), and must
  // still find its entry to erase.
  class registration {
   public:
    registration() = default;
    registration(registration&& other) noexcept;
    registration& operator=(registration&&) = delete;
    registration(const registration&) = delete;
    ~registration();

   private:
    friend class drain_watch;
    std::shared_ptr<watcher_list> list_;
    watcher_list::iterator at_;
  };
  registration watch(std::function<void()> on_expiry);

  bool expired() const { return expired_; }

 private:
  void expire_at(net::io_context& io, std::chrono::steady_clock::time_point at);
  void expire();
  void shutdown() override;

  std::shared_ptr<watcher_list> watchers_ = std::make_shared<watcher_list>();
  std::optional<net::steady_timer> timer_;
  bool expired_ = false;
};

}  // namespace glm::proxy
