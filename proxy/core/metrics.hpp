#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "balancer/balancer.hpp"
#include "proxy/core/endpoint.hpp"
#include "proxy/core/failure_kind.hpp"
#include "proxy/core/refusal_reason.hpp"

namespace glm::proxy {

// The Prometheus metrics glm-proxy exports on GET /metrics of its serving port (no second HTTP
// server). Counters and histograms live in a prometheus-cpp registry, kept out of this header so
// the rest of proxy/ does not parse prometheus-cpp; the per-backend gauges are read from the
// balancer at scrape time, so they can never drift from the scheduling state.
//
// Every label value known in advance has its series from the start, at 0, so a new dashboard or
// alert sees 0 instead of "no data": the endpoints (requests, durations), the refusal reasons,
// the roles (retries), and, from the first scrape on, every instance the balancer knows
// (prefill durations, upstream errors by kind, prefills without KV).
//
// Thread safety: every member is safe to call from any worker. Counter increments are atomic;
// Family::Add and Histogram::Observe take prometheus-cpp's short internal locks.
class metrics {
 public:
  metrics();
  ~metrics();
  metrics(const metrics&) = delete;
  metrics& operator=(const metrics&) = delete;

  void request_done(endpoint e, unsigned code, double seconds);
  void time_to_first_token(double seconds);
  void inter_token(double seconds);
  void prefill_duration(const std::string& backend, double seconds);
  void upstream_error(balancer::role role, const std::string& backend, failure_kind kind);
  // A 2xx prefill answer with no kv_transfer_params (absent or null): the decoder recomputes the
  // whole prompt, which usually means a misconfigured KV connector.
  void prefill_without_kv(const std::string& backend);
  void retry(balancer::role role);
  void recompute();
  void client_disconnect();
  void stream_events(std::size_t n);
  void connection_opened();
  void connection_closed();
  // A request or connection answered with an error before any backend was asked.
  void refused(refusal_reason reason);
  // A scrape of a backend's /metrics that gave no usable sample; `reason` is a short word
  // (metrics_fetch::reason_of, protocol::to_string(engine_metrics_error)), each of which has a
  // series per instance from the first scrape on.
  void scrape_error(balancer::role role, const std::string& backend, std::string_view reason);
  // A request decoded without a prefill (--prefill-fallback decode).
  void prefill_fallback();
  // Layerwise mode: a /v1/metaserver call answered with `code`, and the time from a decode
  // request's sending to one of its callbacks.
  void metaserver_request(unsigned code);
  void metaserver_wait(double seconds);
  // The --max-inflight gate as the scrape finds it: requests holding a slot and requests waiting
  // in line. Set just before serialize(), like the backend gauges, so it cannot drift.
  void inflight_gate_state(std::size_t inflight, std::size_t waiting);

  // The text exposition format (version 0.0.4).
  std::string serialize(const balancer::balancer& lb) const;

 private:
  struct families;
  std::unique_ptr<families> f_;
};

}  // namespace glm::proxy
