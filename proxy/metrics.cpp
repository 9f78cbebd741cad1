#include "proxy/metrics.hpp"

#include <prometheus/text_serializer.h>

namespace glm::proxy {
namespace {

// LLM latencies run from a millisecond (a token gap) to minutes (a 200k-token prefill or a long
// generation): a roughly 1-2.5-5 ladder from 1 ms to 10 min.
const prometheus::Histogram::BucketBoundaries& latency_buckets() {
  static const prometheus::Histogram::BucketBoundaries buckets{
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
      1,     2.5,    5,     10,   30,    60,   120, 300,  600};
  return buckets;
}

template <class Builder>
auto& named(Builder builder, const char* name, const char* help, prometheus::Registry& r) {
  return builder.Name(name).Help(help).Register(r);
}

}  // namespace

metrics::metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(named(prometheus::BuildCounter(), "glm_proxy_requests_total",
                      "Requests answered, by endpoint and HTTP status", *registry_)),
      request_duration_(named(prometheus::BuildHistogram(), "glm_proxy_request_duration_seconds",
                              "Time from a request's arrival to the end of its answer",
                              *registry_)),
      ttft_(named(prometheus::BuildHistogram(), "glm_proxy_time_to_first_token_seconds",
                  "Time from a completion request's arrival to the first decode byte sent",
                  *registry_)
                .Add({}, latency_buckets())),
      inter_token_(named(prometheus::BuildHistogram(), "glm_proxy_inter_token_seconds",
                         "Gaps between consecutive decode writes of a stream", *registry_)
                       .Add({}, latency_buckets())),
      prefill_duration_(named(prometheus::BuildHistogram(), "glm_proxy_prefill_duration_seconds",
                              "Prefill request duration, by prefiller", *registry_)),
      upstream_errors_(named(prometheus::BuildCounter(), "glm_proxy_upstream_errors_total",
                             "Failed backend calls, by role, backend and kind", *registry_)),
      retries_(named(prometheus::BuildCounter(), "glm_proxy_retries_total",
                     "Backend calls retried, by role", *registry_)),
      recomputes_(named(prometheus::BuildCounter(), "glm_proxy_recomputes_total",
                        "Requests re-prefilled after a decoder preempted them", *registry_)
                      .Add({})),
      client_disconnects_(named(prometheus::BuildCounter(), "glm_proxy_client_disconnects_total",
                                "Requests whose client left before the answer ended", *registry_)
                              .Add({})),
      stream_events_(named(prometheus::BuildCounter(), "glm_proxy_stream_events_total",
                           "SSE events relayed to clients", *registry_)
                         .Add({})),
      connections_(named(prometheus::BuildGauge(), "glm_proxy_connections_active",
                         "Client connections open", *registry_)
                       .Add({})),
      refusals_(named(prometheus::BuildCounter(), "glm_proxy_refusals_total",
                      "Requests and connections turned away by a limit or a check, by reason",
                      *registry_)),
      gate_inflight_(
          named(prometheus::BuildGauge(), "glm_proxy_inflight_requests",
                "Completion requests holding a --max-inflight slot (0 without the limit)",
                *registry_)
              .Add({})),
      gate_waiting_(named(prometheus::BuildGauge(), "glm_proxy_queued_requests",
                          "Completion requests waiting in line for a --max-inflight slot",
                          *registry_)
                        .Add({})) {
  // Known label sets start at 0, so rate() sees the first retry.
  for (auto role : {balancer::role::prefill, balancer::role::decode}) {
    retries_.Add({{"role", std::string(balancer::to_string(role))}});
  }
  named(prometheus::BuildGauge(), "glm_proxy_build_info", "glm-proxy version", *registry_)
      .Add({{"version", GLM_PROXY_VERSION}})
      .Set(1);
}

void metrics::request_done(std::string_view endpoint, unsigned code, double seconds) {
  std::string e(endpoint);
  requests_.Add({{"endpoint", e}, {"code", std::to_string(code)}}).Increment();
  request_duration_.Add({{"endpoint", e}}, latency_buckets()).Observe(seconds);
}

void metrics::time_to_first_token(double seconds) {
  ttft_.Observe(seconds);
}
void metrics::inter_token(double seconds) {
  inter_token_.Observe(seconds);
}

void metrics::prefill_duration(const std::string& backend, double seconds) {
  prefill_duration_.Add({{"backend", backend}}, latency_buckets()).Observe(seconds);
}

void metrics::upstream_error(balancer::role role, const std::string& backend,
                             std::string_view kind) {
  upstream_errors_
      .Add({{"role", std::string(balancer::to_string(role))},
            {"backend", backend},
            {"kind", std::string(kind)}})
      .Increment();
}

void metrics::retry(balancer::role role) {
  retries_.Add({{"role", std::string(balancer::to_string(role))}}).Increment();
}

void metrics::recompute() {
  recomputes_.Increment();
}
void metrics::client_disconnect() {
  client_disconnects_.Increment();
}
void metrics::stream_events(std::size_t n) {
  stream_events_.Increment(static_cast<double>(n));
}
void metrics::connection_opened() {
  connections_.Increment();
}
void metrics::connection_closed() {
  connections_.Decrement();
}

void metrics::refused(std::string_view reason) {
  refusals_.Add({{"reason", std::string(reason)}}).Increment();
}

void metrics::inflight_gate_state(std::size_t inflight, std::size_t waiting) {
  gate_inflight_.Set(static_cast<double>(inflight));
  gate_waiting_.Set(static_cast<double>(waiting));
}

std::string metrics::serialize(const balancer::balancer& lb) const {
  auto families = registry_->Collect();
  // The backend gauges come from one balancer snapshot, in a registry of their own per scrape:
  // instances come and go, and stale label sets must not linger.
  prometheus::Registry backends;
  auto& inflight = named(prometheus::BuildGauge(), "glm_proxy_backend_inflight",
                         "Requests holding each backend", backends);
  auto& load = named(prometheus::BuildGauge(), "glm_proxy_backend_load",
                     "The balancer's score of each backend (prefill: active_tokens + 0.3 * "
                     "active_kv_cache; decode: active_tokens)",
                     backends);
  auto& healthy = named(prometheus::BuildGauge(), "glm_proxy_backend_healthy",
                        "1 when the backend can be chosen, 0 when isolated or ejected", backends);
  // A counter read from the balancer like the gauges: it is monotonic for as long as the backend
  // is an instance, and its series goes when the backend is removed.
  auto& ejections = named(prometheus::BuildCounter(), "glm_proxy_ejections_total",
                          "Times the backend was taken out of rotation after consecutive "
                          "failures, re-ejections after a failed probe included",
                          backends);
  for (const auto& i : lb.instances()) {
    prometheus::Labels labels{{"role", std::string(balancer::to_string(i.kind))},
                              {"backend", i.address.to_string()}};
    inflight.Add(labels).Set(static_cast<double>(i.inflight));
    load.Add(labels).Set(i.kind == balancer::role::prefill
                             ? i.active_tokens + 0.3 * i.active_kv_cache
                             : i.active_tokens);
    healthy.Add(labels).Set(i.isolated || i.ejected ? 0 : 1);
    ejections.Add(labels).Increment(static_cast<double>(i.ejections_total));
  }
  auto backend_families = backends.Collect();
  families.insert(families.end(), backend_families.begin(), backend_families.end());
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace glm::proxy
