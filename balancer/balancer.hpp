#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

#include "balancer/backend_address.hpp"
#include "balancer/request_lease.hpp"

namespace glm::balancer {

// A copy of one instance's scheduling state, for /healthcheck, /metrics and tests.
struct instance_snapshot {
  std::uint64_t id = 0;
  role kind = role::prefill;
  backend_address address;
  double active_tokens = 0;
  double active_kv_cache = 0;
  std::uint64_t inflight = 0;  // leases currently holding this instance
  bool isolated = false;       // removed while requests were in flight: never chosen again
};

// A pending instance (added through /instances/add) that is due for a GET /v1/models probe.
struct probe_task {
  std::uint64_t pending_id = 0;
  role kind = role::prefill;
  backend_address address;
};

// balancer::options. Declared outside the class because a nested struct's default member
// initializers are not usable in the enclosing class's own default arguments (CWG 1397; GCC and
// Clang both reject `options opts = {}` otherwise).
struct balancer_options {
  int max_waiting_retries = 3;  // failed probes before a pending instance is dropped
  std::chrono::milliseconds waiting_retry_interval{10'000};
};

// The reference proxy's least-loaded scheduler, shared by every worker thread.
//
// Scores use the byte length L of the client's body. A prefiller is chosen by the lowest
// active_tokens + 0.3 * active_kv_cache and charged prefill_score(L) on active_kv_cache; a decoder
// by the lowest active_tokens and charged decode_score(L). Ties go to the instance added first.
//
// Thread safety: every public member function takes one internal mutex, held only to choose,
// release or copy state; nothing blocks while it is held. Lifetime: the balancer must outlive every
// request_lease it hands out. Time comes only from the injected clock, so tests drive it by hand.
class balancer {
 public:
  using clock = std::function<std::chrono::steady_clock::time_point()>;

  using options = balancer_options;

  balancer(
      const std::vector<backend_address>& prefillers, const std::vector<backend_address>& decoders,
      options opts = {}, clock now = [] { return std::chrono::steady_clock::now(); });
  balancer(const balancer&) = delete;
  balancer& operator=(const balancer&) = delete;

  static double prefill_score(std::size_t body_bytes);  // L / 4 * 0.0345 + 120.0745
  static double decode_score(std::size_t body_bytes);   // L

  // Counts one request in flight (request_num) until the lease is reset or destroyed.
  request_lease begin_request(std::size_t body_bytes);

  std::size_t request_num() const;
  std::size_t active_count(role kind) const;  // chosen-from instances: not pending, not isolated
  std::vector<instance_snapshot> instances() const;  // active and isolated, in the order added

  // /instances/add: queues addresses that are neither active nor pending (compared with
  // backend_address::same_as) and returns the ones queued. Each is probed at once, then every
  // waiting_retry_interval, until a probe succeeds (it becomes active) or max_waiting_retries
  // probes have failed (it is dropped).
  std::vector<backend_address> add_pending(role kind, const std::vector<backend_address>& addrs);
  std::vector<backend_address> pending(role kind) const;
  // Pending instances whose probe is due now; each is then not due again until its result is in.
  std::vector<probe_task> due_probes();
  void probe_result(std::uint64_t pending_id, bool ok);
  // When the next probe falls due, if any instance is pending.
  std::optional<std::chrono::steady_clock::time_point> next_probe_time() const;

  // /instances/remove: with no request in flight the instances go at once; otherwise they are
  // isolated (never chosen) and removed when request_num next reaches 0. Returns the addresses that
  // matched an active instance, and whether they were isolated rather than removed.
  struct remove_result {
    std::vector<backend_address> removed;
    bool isolated = false;
  };
  remove_result remove(role kind, const std::vector<backend_address>& addrs);

 private:
  friend class request_lease;

  // Defined here rather than in balancer.cpp: the implicit destructor of the vectors below is
  // instantiated in every translation unit that destroys a balancer, which needs complete types.
  struct instance {
    std::uint64_t id = 0;
    role kind = role::prefill;
    backend_address address;
    double active_tokens = 0;
    double active_kv_cache = 0;
    std::uint64_t inflight = 0;
    bool isolated = false;
  };
  struct pending_instance {
    std::uint64_t id = 0;
    role kind = role::prefill;
    backend_address address;
    int failures = 0;
    std::chrono::steady_clock::time_point due;
    bool probing = false;  // a probe is outstanding: not due again until its result is in
  };

  // The least-loaded instance of `kind`, preferring those not in `avoid` (instances that already
  // failed this request); one in `avoid` is chosen only when no other can be.
  std::optional<std::pair<std::uint64_t, backend_address>> choose(
      role kind, double score, const std::vector<std::uint64_t>& avoid);
  void release(std::uint64_t id, double tokens, double kv_cache);
  void end_request();

  mutable std::mutex mutex_;
  options opts_;
  clock now_;
  std::vector<instance> instances_;  // guarded by mutex_
  std::vector<pending_instance> pending_;
  std::uint64_t next_id_ = 1;
  std::size_t request_num_ = 0;
};

}  // namespace glm::balancer
