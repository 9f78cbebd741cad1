#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "protocol/metaserver_callback.hpp"
#include "proxy/core/asio.hpp"

namespace glm::proxy {

// The layerwise mode's meeting point (README "Layerwise mode"): a request that sent its decode
// registers the vLLM request ids its decoder will report (protocol::layerwise_request_ids); the
// decoder's POST /v1/metaserver, served by any worker, delivers its callback here and waits for
// the prefill's outcome; the request, woken once every id has called, sends the prefill and then
// answers all the callbacks at once.
//
// Thread safety: a callback may land on another worker than its request (each worker is one
// thread running its own io_context). The id map and each entry's state are guarded by mutexes
// held only for map and vector operations, never across a suspension. Timers are touched only on
// their own executor: a side wakes the other by posting to the other's executor, and a timer
// that may be gone is reached through a pointer its owner clears, on that same executor, before
// it goes. So no Asio object is used from a foreign thread.
//
// Lifetime: the registry outlives every worker's sessions (the server owns it). An entry lives as
// long as its registration and the callbacks still waiting on it (shared ownership).
class metaserver_registry {
 public:
  struct entry;

  // How a registration's callbacks are answered.
  enum class outcome {
    prefilled,      // 200 {"status":"ok"}: the KV cache is on its way
    prefill_failed  // 502: the prefill failed, or the request ended first
  };

  // The request side of an entry; move-only. Its ids are registered until it finishes or is
  // destroyed, and any callback still waiting is then answered prefill_failed: every way a
  // request ends gives the ids back and leaves no decoder waiting on the proxy. Used on the
  // executor given to expect() only.
  class registration {
   public:
    registration() = default;
    registration(registration&& other) noexcept = default;
    registration& operator=(registration&& other) noexcept;
    registration(const registration&) = delete;
    registration& operator=(const registration&) = delete;
    ~registration();

    // Waits until every id has called back (true), or `timeout` passes or cancel() is called
    // (false). The callbacks are then in callbacks(), in id order. Call it at most once.
    net::awaitable<bool> wait(std::chrono::steady_clock::duration timeout);
    // Ends a wait() in progress, or the next one, with false.
    void cancel();
    // The delivered callbacks in id order, once wait() returned true.
    std::vector<protocol::metaserver_callback> take_callbacks();
    // A new decode attempt, sent with a new X-Request-Id: expects `ids` instead of the current
    // ones (now unknown), and forgets the callbacks so far, which came from the decoder that
    // failed (they are answered prefill_failed). A wait() in progress goes on. False, and nothing
    // changed, if one of `ids` is registered already, or the registration has finished.
    bool restart(std::vector<std::string> ids);
    // Unregisters the ids and answers every waiting callback with `how`. Idempotent (the first
    // outcome stands); callbacks that arrive later are unknown (404).
    void finish(outcome how);

    bool active() const { return entry_ != nullptr; }

   private:
    friend class metaserver_registry;
    metaserver_registry* owner_ = nullptr;
    std::shared_ptr<entry> entry_;
    std::unique_ptr<net::steady_timer> wake_;  // the request's wake-up; see entry::wake
  };

  // What a callback waits on: the answer its request will give. Touched on `executor` only.
  struct reply {
    net::any_io_executor executor;
    net::steady_timer* timer = nullptr;  // the callback's wait, while it waits
    std::optional<outcome> answer;
  };

  // How deliver() went.
  struct delivery {
    enum class result {
      accepted,   // `answer` is answered once the prefill is done (or the request ended)
      unknown,    // no request waits for this id (never registered, or finished): 404
      duplicate,  // this id has already called: 409
    };
    result how = result::unknown;
    std::shared_ptr<reply> answer;
    // From the decode request's sending to this callback.
    std::chrono::steady_clock::duration waited{};
  };

  metaserver_registry() = default;
  metaserver_registry(const metaserver_registry&) = delete;
  metaserver_registry& operator=(const metaserver_registry&) = delete;

  // Registers `ids` (their decode request being sent now) for a request whose coroutine runs on
  // `request_executor`. An id already registered (a vLLM id can only repeat if a backend request
  // id did, which layerwise_request makes unique) leaves the registration inactive.
  registration expect(std::vector<std::string> ids, net::any_io_executor request_executor);

  // A decoder's callback, served on `callback_executor`: stored in its request's entry, which
  // is woken when it was the last one missing.
  delivery deliver(protocol::metaserver_callback callback, net::any_io_executor callback_executor);

  // Waits for the answer of an accepted delivery (on the executor given to deliver()).
  static net::awaitable<outcome> answer_of(std::shared_ptr<reply> answer);

  // Ids registered now (for tests and /healthcheck-style checks).
  std::size_t registered() const;

  // For the server, once its workers have stopped: their io_contexts (and the callbacks waiting
  // on them) are about to go, so a request frame destroyed from now on must post nothing to them.
  void close() { closed_ = true; }

  // The decode requests' kv_transfer_params (protocol::layerwise_splicer::decode_params of the
  // metaserver URL). Set once by the server, after it listens (the URL may name the bound port)
  // and before any request; read-only afterwards.
  void set_decode_params(std::string params) { decode_params_ = std::move(params); }
  const std::string& decode_params() const { return decode_params_; }

 private:
  void unregister(const entry& e);
  static void answer(std::vector<std::shared_ptr<reply>> replies, outcome how);

  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<entry>> by_id_;
  std::string decode_params_;
  std::atomic<bool> closed_{false};
};

}  // namespace glm::proxy
