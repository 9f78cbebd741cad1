#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace glm::balancer {

// One good read of an engine's /metrics (protocol::engine_metrics, stamped by the scraper).
struct engine_sample {
  std::uint64_t running = 0;  // summed over the server's engines
  std::uint64_t waiting = 0;
  double kv_usage = 0;  // 0..1, the fullest engine's
  // The KV cache's capacity in tokens (vllm:cache_config_info: block_size x num_gpu_blocks over
  // the engines); 0 when not reported. cache_aware bounds the instance's prefix index by it.
  std::uint64_t cache_tokens = 0;
  // When the scrape was sent. The gauges are at least that fresh; stamping the send rather than
  // the answer makes a slow /metrics age its sample sooner, never later.
  std::chrono::steady_clock::time_point taken{};

  std::uint64_t queued() const { return running + waiting; }
};

struct engine_load_options {
  // --scrape-interval. Zero: scraping is off, every report is ignored and only the proxy's own
  // counts matter (what glm-proxy did before it read /metrics).
  std::chrono::milliseconds interval{0};
  // A sample older than max_age_intervals * interval is ignored. Three intervals: one late or
  // failed scrape (a GC pause, a slow answer) does not throw away a recent report, while the
  // engines' gauges, which lag by seconds already, are never trusted for longer than that.
  unsigned max_age_intervals = 3;
  // --kv-high: from this KV usage up, an instance gets no new requests while another eligible one
  // is below it (saturation_veto). Values above 1 turn the veto off.
  double kv_high = 0.95;
};

// What an instance's engine last reported, and the rules that combine it with the proxy's own
// count of requests in flight there. Pure: no I/O, no clock of its own; `now` is an argument.
//
// Combination. vLLM's gauges count every request on the server: this proxy's, other proxy
// replicas', clients that reach the engine directly. Those gauges lag the engine by seconds, the
// proxy's own count does not, so the report only adds what the proxy cannot see:
//
//   effective = own + max(0, reported - own)        (reported = running + waiting)
//
// A request this proxy just sent is counted at once even if the last report predates it, and a
// report never lowers the load below the proxy's own count.
//
// Failure. A failed or refused scrape changes nothing here (on_scrape_failure only counts it): the
// last good sample keeps counting until it is older than max_age, then the instance falls back to
// its own count. A scrape that fails can thus never make an instance look idle, nor eject it.
//
// Thread safety: none; the owner (the balancer, under its mutex) serialises calls. Copyable.
class engine_load {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  explicit engine_load(engine_load_options opts = {}) : opts_(opts) {}

  // A good scrape. A sample taken before the one held is dropped (an answer that overtook a later
  // one), so the held sample only moves forward in time.
  void on_sample(const engine_sample& sample);
  // A scrape that failed (connect, timeout, status, size cap, or a body parse refused).
  void on_scrape_failure() { ++failures_in_row_; }

  // The last good sample if it is still young enough to use at `now`, else nullopt (also when
  // scraping is off). A sample is used while now - taken <= max_age(); one stamped after `now`
  // counts as taken now.
  std::optional<engine_sample> fresh_sample(time_point now) const;

  // The load beyond this proxy's own that the engine reports: max(0, reported - own), 0 without
  // a fresh sample.
  std::uint64_t external_load(std::uint64_t own, time_point now) const;
  // own + external_load(own, now).
  std::uint64_t effective_load(std::uint64_t own, time_point now) const {
    return own + external_load(own, now);
  }
  // A fresh sample's kv_usage is at or above kv_high. Without one, false: an unknown state is no
  // evidence of saturation.
  bool saturated(time_point now) const;

  // For /healthcheck and /metrics: the last good sample whatever its age, failures since it.
  const std::optional<engine_sample>& last_sample() const { return last_; }
  std::uint64_t failures_in_row() const { return failures_in_row_; }
  // How old the last good sample is at `now` (0 for one stamped later), nullopt without one.
  std::optional<std::chrono::nanoseconds> sample_age(time_point now) const;
  // The last scrape succeeded (glm_proxy_backend_metrics_up).
  bool up() const { return last_.has_value() && failures_in_row_ == 0; }
  std::chrono::nanoseconds max_age() const { return opts_.interval * opts_.max_age_intervals; }
  const engine_load_options& options() const { return opts_; }

 private:
  engine_load_options opts_;
  std::optional<engine_sample> last_;
  std::uint64_t failures_in_row_ = 0;
};

// The saturation veto for one choice among the instances eligible for it (not ejected, not
// isolated): a saturated instance is excluded while at least one eligible instance is not; when
// every one is saturated none is excluded (fail open), so a full cluster still serves rather than
// refusing everything. Usage, two passes over the candidates:
//
//   saturation_veto veto;
//   for (auto& c : eligible) veto.count(c.load.saturated(now));
//   for (auto& c : eligible) if (!veto.excludes(c.load.saturated(now))) consider(c);
class saturation_veto {
 public:
  void count(bool saturated) { saturated ? ++saturated_ : ++below_; }
  bool excludes(bool saturated) const { return saturated && below_ > 0; }
  std::size_t below() const { return below_; }
  std::size_t saturated() const { return saturated_; }

 private:
  std::size_t below_ = 0;
  std::size_t saturated_ = 0;
};

}  // namespace glm::balancer
