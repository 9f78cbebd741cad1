#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <string_view>

#include "balancer/balancer.hpp"

namespace glm::proxy {

// The Prometheus metrics glm-proxy exports on GET /metrics of its serving port (no second HTTP
// server). Counters and histograms live in a prometheus-cpp registry; the per-backend gauges are
// read from the balancer at scrape time, so they can never drift from the scheduling state.
//
// Thread safety: every member is safe to call from any worker. Counter increments are atomic;
// Family::Add and Histogram::Observe take prometheus-cpp's short internal locks.
class metrics {
 public:
  metrics();

  void request_done(std::string_view endpoint, unsigned code, double seconds);
  void time_to_first_token(double seconds);
  void inter_token(double seconds);
  void prefill_duration(const std::string& backend, double seconds);
  // kind: connect, timeout, status, reset, protocol...
  void upstream_error(balancer::role role, const std::string& backend, std::string_view kind);
  void retry(balancer::role role);
  void recompute();
  void client_disconnect();
  void stream_events(std::size_t n);
  void connection_opened();
  void connection_closed();
  // A request or connection turned away by a limit or a check: reason is one of max_connections,
  // max_inflight, queue_timeout, unauthorized, forbidden, body_too_large, headers_too_large,
  // malformed, no_instance.
  void refused(std::string_view reason);
  // The --max-inflight gate as the scrape finds it: requests holding a slot and requests waiting
  // in line. Set just before serialize(), like the backend gauges, so it cannot drift.
  void inflight_gate_state(std::size_t inflight, std::size_t waiting);

  // The text exposition format (version 0.0.4).
  std::string serialize(const balancer::balancer& lb) const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& request_duration_;
  prometheus::Histogram& ttft_;
  prometheus::Histogram& inter_token_;
  prometheus::Family<prometheus::Histogram>& prefill_duration_;
  prometheus::Family<prometheus::Counter>& upstream_errors_;
  prometheus::Family<prometheus::Counter>& retries_;
  prometheus::Counter& recomputes_;
  prometheus::Counter& client_disconnects_;
  prometheus::Counter& stream_events_;
  prometheus::Gauge& connections_;
  prometheus::Family<prometheus::Counter>& refusals_;
  prometheus::Gauge& gate_inflight_;
  prometheus::Gauge& gate_waiting_;
};

}  // namespace glm::proxy
