#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "balancer/backend_address.hpp"
#include "balancer/ejection_backoff.hpp"
#include "balancer/engine_load.hpp"
#include "balancer/lifecycle.hpp"
#include "balancer/prefix_index.hpp"
#include "balancer/request_lease.hpp"
#include "balancer/route_policy.hpp"
#include "balancer/route_selector.hpp"
#include "balancer/session_pins.hpp"

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
  // Outlier ejection. An ejected instance is out of rotation until its time is up and a probe
  // succeeded; `probing` says its time is up (the probe is due or under way).
  bool ejected = false;
  bool probing = false;
  int consecutive_failures = 0;       // failures since its last success (reset when it comes back)
  std::uint64_t ejections_total = 0;  // every ejection, re-ejections after failed probes included
  double eject_seconds_left = 0;      // until its probe is due; 0 when not ejected or already due
  lifecycle state = lifecycle::active;  // the one value the three flags above are derived from
  std::uint64_t picks = 0;              // times chosen
  // cache_aware only (0 otherwise): the prefix index and how the prefill answers bore it out.
  std::size_t prefix_entries = 0;
  std::uint64_t mispredictions = 0;  // answers that showed less cached than confirmed entries said
  std::uint64_t prompt_tokens = 0;   // sums of the usage reported through prefill_usage(), every
                                     // policy: the real prefix-cache hit ratio
  std::uint64_t cached_tokens = 0;
  // What the engine's /metrics last reported (--scrape-interval > 0; otherwise never set).
  std::optional<engine_sample> engine;  // the last good sample, whatever its age
  double engine_age_seconds = 0;        // of that sample at the snapshot's time
  bool engine_fresh = false;            // young enough to count in the choice
  bool engine_up = false;               // the last scrape succeeded
  bool engine_saturated = false;        // fresh and at or above --kv-high
  std::uint64_t engine_failures_in_row = 0;
};

// An instance whose /metrics is due to be read (engine_scraper).
struct scrape_target {
  std::uint64_t id = 0;  // for engine_report() and engine_scrape_failed()
  role kind = role::prefill;
  backend_address address;
};

// One label set of glm_proxy_route_decisions_total.
struct route_decision_count {
  role kind = role::prefill;
  route_policy policy = route_policy::least_loaded;
  route_reason reason = route_reason::least_loaded;
  std::uint64_t count = 0;
};

// An instance due for a GET /v1/models probe: a pending one (added through /instances/add) or an
// ejected one whose ejection time is up.
struct probe_task {
  std::uint64_t pending_id = 0;  // the id to pass to probe_result(), for either kind of probe
  role kind = role::prefill;
  backend_address address;
  bool ejected = false;  // a probe that brings an ejected instance back, not one that adds it
};

// An ejection, kept for the I/O side to log (the balancer does no I/O).
struct ejection_event {
  role kind = role::prefill;
  backend_address address;
  std::chrono::milliseconds duration{0};
  bool after_probe = false;  // a failed probe re-ejected it, rather than request failures
};

// balancer::options. Declared outside the class because a nested struct's default member
// initializers are not usable in the enclosing class's own default arguments (CWG 1397; GCC and
// Clang both reject `options opts = {}` otherwise).
struct balancer_options {
  int max_waiting_retries = 3;  // failed probes before a pending instance is dropped
  std::chrono::milliseconds waiting_retry_interval{10'000};
  // Outlier ejection: eject_after consecutive failures (0: never) take an instance out of rotation
  // for eject_base * 2^(k-1), k counting its recent ejections, at most max(eject_max, eject_base).
  int eject_after = 3;
  std::chrono::milliseconds eject_base{5'000};
  std::chrono::milliseconds eject_max{300'000};
  // Policies and their thresholds (route_policy.hpp); check them with validate() first.
  route_options routing;
  // --scrape-interval and --kv-high: how the engines' own reports count (engine_load.hpp). The
  // default interval 0 ignores every report, and the choices are the proxy's own counts alone.
  engine_load_options engine;
};

// The scheduler shared by every worker thread: membership, ejection, probes, and the choice of
// an instance per role by that role's route_policy (route_selector.hpp has the decisions).
//
// Loads use the byte length L of the client's body, as the reference does. A prefiller is charged
// prefill_score(L) on active_kv_cache and its least_loaded score is active_tokens + 0.3 *
// active_kv_cache; a decoder is charged decode_score(L) and scored by active_tokens. Every policy
// breaks ties toward the instance picked least recently, so idle instances share sequential
// traffic evenly.
//
// cache_aware keeps a prefix_index per instance of that role (bounded by cache_max_entries): what
// each prefiller is predicted to have cached, fed by the choices and checked against the usage the
// prefill answers report (request_lease::prefill_usage). Removal, ejection and
// reset_prefix_cache() drop an instance's entries.
//
// Load from the engines (options::engine, when its interval is not 0). Each instance holds an
// engine_load fed by engine_report() from the I/O side's scrapes. While its sample is fresh, every
// policy compares effective loads: the requests the engine reports beyond this proxy's own count
// there are added to the instance's in-flight count (the overload gates of cache_aware and
// consistent_hash), and to its least_loaded score at the weight of the request being placed (an
// unseen request is taken to weigh as much as this one). A fresh sample at or above kv_high vetoes
// the instance while another candidate is below it (saturation_veto: fail open). A failed scrape
// only counts; the last good sample ages out after three intervals.
//
// Outlier ejection. A request's outcome on an instance is reported through its lease: a success
// resets the instance's consecutive failures, an instance fault adds one. eject_after of them in a
// row eject it: it is never chosen (not even as a lease's last resort) until its ejection time is
// up AND a GET /v1/models probe succeeded; a failed probe ejects it again for twice as long. The
// k-th ejection in a row lasts eject_base * 2^(k-1), capped; k starts over at 1 once an instance
// has stayed in rotation for at least as long as its last ejection, so an instance that fails
// once a day is not punished for last week's outage. Even the last instance of a role is ejected:
// requests then fail fast (503 with retry_after()) instead of each waiting for a dead backend.
// While an instance is ejected, outcomes of requests still in flight on it change nothing.
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
  // Instances of `kind` that are neither pending nor isolated (ejected ones included).
  std::size_t active_count(role kind) const;
  std::vector<instance_snapshot> instances() const;  // active and isolated, in the order added

  // Every label set of glm_proxy_route_decisions_total for the configured policies, zeros
  // included (a dashboard sees 0 rather than no data).
  std::vector<route_decision_count> route_decisions() const;
  const route_options& routing() const { return opts_.routing; }
  // Learned from prefill answers (prompt bytes / prompt_tokens); 4 until the first answer.
  double bytes_per_token() const;

  // POST /reset_prefix_cache: forget what the instances of `kind` (only `which`, when given)
  // are predicted to have cached.
  void reset_prefix_cache(role kind, const std::optional<backend_address>& which = std::nullopt);

  // For a 503's Retry-After when no instance of `kind` can be chosen: whole seconds, rounded up,
  // until the earliest ejected instance of `kind` is due for its probe; at least 1 (also when none
  // is ejected).
  std::chrono::seconds retry_after(role kind) const;
  // The ejections since the last call, oldest first (at most 256 are kept between calls).
  std::vector<ejection_event> take_ejections();

  // /instances/add: queues addresses that are neither active nor pending (compared with
  // backend_address::same_as) and returns the ones queued. Each is probed at once, then every
  // waiting_retry_interval, until a probe succeeds (it becomes active) or max_waiting_retries
  // probes have failed (it is dropped).
  std::vector<backend_address> add_pending(role kind, const std::vector<backend_address>& addrs);
  std::vector<backend_address> pending(role kind) const;
  // Pending instances, and ejected ones whose time is up, whose probe is due now; each is then not
  // due again until its result is in. A result for an instance removed meanwhile is ignored.
  std::vector<probe_task> due_probes();
  void probe_result(std::uint64_t pending_id, bool ok);
  // When the next probe falls due, if any instance is pending or ejected.
  std::optional<std::chrono::steady_clock::time_point> next_probe_time() const;

  // /instances/remove: with no request in flight the instances go at once; otherwise they are
  // isolated (never chosen) and removed when request_num next reaches 0. Returns the addresses that
  // matched an active instance (ejected ones included), and whether they were isolated rather than
  // removed.
  struct remove_result {
    std::vector<backend_address> removed;
    bool isolated = false;
  };
  remove_result remove(role kind, const std::vector<backend_address>& addrs);

  // Load from the engines. The instances whose /metrics is to be read: every one that is not
  // isolated (pending and ejected ones too: a report of them is kept, and counts once they serve).
  std::vector<scrape_target> scrape_targets() const;
  // A good scrape of instance `id` (taken: when it was sent). Ignored for an instance gone since.
  void engine_report(std::uint64_t id, const engine_sample& sample);
  // A failed scrape of instance `id`: counted, never an ejection, and the last sample stays.
  void engine_scrape_failed(std::uint64_t id);
  const engine_load_options& engine_options() const { return opts_.engine; }

 private:
  friend class request_lease;

  using time_point = std::chrono::steady_clock::time_point;

  // Defined here rather than in balancer.cpp: the implicit destructor of the vectors below is
  // instantiated in every translation unit that destroys a balancer, which needs complete types.
  // Pending instances live here too (state pending), so one id space and one list cover every
  // instance; they are left out of instances() and of every choice.
  struct instance {
    std::uint64_t id = 0;
    role kind = role::prefill;
    backend_address address;
    std::uint64_t address_hash = 0;  // for rendezvous hashing
    lifecycle state = lifecycle::active;
    double active_tokens = 0;
    double active_kv_cache = 0;
    std::uint64_t inflight = 0;
    int consecutive_failures = 0;  // active: request failures in a row; pending: failed probes
    ejection_backoff backoff;
    // pending: when its next probe is due; ejected: when its ejection ends. time_point::max()
    // while a pending instance's probe is under way (it is not due again until the result).
    time_point next_probe{};
    std::uint64_t last_pick = 0;
    std::uint64_t picks = 0;
    std::unique_ptr<prefix_index> index;  // cache_aware roles only
    std::uint64_t mispredictions = 0;
    std::uint64_t prompt_tokens = 0;
    std::uint64_t cached_tokens = 0;
    engine_load engine;
  };
  instance make_instance(role kind, const backend_address& a, lifecycle state);
  instance* find(std::uint64_t id);
  route_policy policy_of(role kind) const;

  // Chooses an instance of `kind` by its policy, preferring those not in `avoid` (instances that
  // already failed this request); one in `avoid` is chosen only when no other can be. `back_to`
  // is the prefiller of a recompute. Fills `ticket` for a cache_aware prefill choice.
  // The active instances of `kind`, those not in `avoid` when there are any, less those the
  // saturation veto excludes; their loads are effective loads at `now`, an engine's unseen
  // requests weighed like this one (`score`).
  void collect_candidates(role kind, double score, time_point now,
                          const std::vector<std::uint64_t>& avoid, std::vector<instance*>& pool,
                          std::vector<route_candidate>& candidates);
  std::optional<std::pair<std::uint64_t, route_choice>> choose(
      role kind, double score, const std::vector<std::uint64_t>& avoid, const route_request& req,
      std::optional<std::uint64_t> back_to, request_lease::prefix_ticket* ticket);
  void release(std::uint64_t id, double tokens, double kv_cache);
  void end_request();
  // A request's outcome on instance `id`, for ejection; only instance faults are reported.
  void succeeded(std::uint64_t id);
  void failed(std::uint64_t id, bool instance_fault, const request_lease::prefix_ticket* ticket);
  // A prefill answer's usage on instance `id`; `ticket` (may be null) is what cache_aware
  // predicted there.
  void usage(std::uint64_t id, const request_lease::prefix_ticket* ticket,
             std::int64_t prompt_tokens, std::int64_t cached_tokens);
  // Takes `i` out of rotation for its next ejection time. Called with mutex_ held.
  void eject(instance& i, time_point now, bool after_probe);
  void count(role kind, route_reason reason);

  mutable std::mutex mutex_;
  options opts_;
  clock now_;
  std::vector<instance> instances_;  // guarded by mutex_, like everything below
  std::uint64_t next_id_ = 1;
  std::uint64_t next_pick_ = 1;  // orders picks for the least-recently-picked tie break
  double bytes_per_token_ = 4.0;
  std::array<session_pins, 2> sessions_;                           // by role
  std::array<std::uint64_t, 2 * route_reason_count> decisions_{};  // by role, reason
  std::size_t request_num_ = 0;
  std::vector<ejection_event> ejections_;  // not yet taken
};

}  // namespace glm::balancer
