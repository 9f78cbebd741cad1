#include "proxy/core/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <vector>

#include "protocol/engine_metrics.hpp"

namespace glm::proxy {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

// LLM latencies run from a millisecond (a token gap) to minutes (a 200k-token prefill or a long
// generation): a roughly 1-2.5-5 ladder from 1 ms to 10 min.
const Histogram::BucketBoundaries& latency_buckets() {
  static const Histogram::BucketBoundaries buckets{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                   0.1,   0.25,   0.5,   1,    2.5,   5,
                                                   10,    30,     60,    120,  300,   600};
  return buckets;
}

template <class Builder>
auto& named(Builder builder, const char* name, const char* help, prometheus::Registry& r) {
  return builder.Name(name).Help(help).Register(r);
}

// Every reason a scrape can fail for: metrics_fetch's transport words, then the body's faults.
const std::vector<std::string_view>& scrape_error_reasons() {
  static const std::vector<std::string_view> reasons = [] {
    std::vector<std::string_view> out{"connect", "timeout", "status", "too_large", "read"};
    for (auto e : {protocol::engine_metrics_error::not_prometheus_text,
                   protocol::engine_metrics_error::malformed_sample,
                   protocol::engine_metrics_error::bad_value,
                   protocol::engine_metrics_error::missing_running,
                   protocol::engine_metrics_error::missing_waiting,
                   protocol::engine_metrics_error::missing_kv_usage}) {
      out.push_back(protocol::to_string(e));
    }
    return out;
  }();
  return reasons;
}

std::string role_label(balancer::role role) {
  return std::string(balancer::to_string(role));
}

}  // namespace

struct metrics::families {
  prometheus::Registry registry;
  Family<Counter>& requests = named(prometheus::BuildCounter(), "glm_proxy_requests_total",
                                    "Requests answered, by endpoint and HTTP status", registry);
  Family<Histogram>& request_duration =
      named(prometheus::BuildHistogram(), "glm_proxy_request_duration_seconds",
            "Time from a request's arrival to the end of its answer", registry);
  Histogram& ttft =
      named(prometheus::BuildHistogram(), "glm_proxy_time_to_first_token_seconds",
            "Time from a completion request's arrival to the first decode byte sent", registry)
          .Add({}, latency_buckets());
  Histogram& inter_token = named(prometheus::BuildHistogram(), "glm_proxy_inter_token_seconds",
                                 "Gaps between consecutive decode writes of a stream", registry)
                               .Add({}, latency_buckets());
  Family<Histogram>& prefill_duration =
      named(prometheus::BuildHistogram(), "glm_proxy_prefill_duration_seconds",
            "Prefill request duration, by prefiller", registry);
  Family<Counter>& upstream_errors =
      named(prometheus::BuildCounter(), "glm_proxy_upstream_errors_total",
            "Failed backend calls, by role, backend and kind", registry);
  Family<Counter>& prefill_without_kv = named(
      prometheus::BuildCounter(), "glm_proxy_prefill_without_kv_total",
      "Prefill answers without kv_transfer_params (the decoder recomputes the prompt)", registry);
  Family<Counter>& retries = named(prometheus::BuildCounter(), "glm_proxy_retries_total",
                                   "Backend calls retried, by role", registry);
  Counter& recomputes = named(prometheus::BuildCounter(), "glm_proxy_recomputes_total",
                              "Requests re-prefilled after a decoder preempted them", registry)
                            .Add({});
  Counter& client_disconnects =
      named(prometheus::BuildCounter(), "glm_proxy_client_disconnects_total",
            "Requests whose client left before the answer ended", registry)
          .Add({});
  Counter& stream_events = named(prometheus::BuildCounter(), "glm_proxy_stream_events_total",
                                 "SSE events relayed to clients", registry)
                               .Add({});
  Gauge& connections = named(prometheus::BuildGauge(), "glm_proxy_connections_active",
                             "Client connections open", registry)
                           .Add({});
  Family<Counter>& refusals =
      named(prometheus::BuildCounter(), "glm_proxy_refusals_total",
            "Requests and connections answered with an error before any backend was asked, by "
            "reason",
            registry);
  Family<Counter>& scrape_errors =
      named(prometheus::BuildCounter(), "glm_proxy_backend_scrape_errors_total",
            "Reads of a backend's /metrics that gave no usable sample, by role, backend and "
            "reason",
            registry);
  Counter& prefill_fallbacks =
      named(prometheus::BuildCounter(), "glm_proxy_prefill_fallbacks_total",
            "Requests decoded without a prefill because no prefiller could serve them "
            "(--prefill-fallback decode)",
            registry)
          .Add({});
  Gauge& gate_inflight =
      named(prometheus::BuildGauge(), "glm_proxy_inflight_requests",
            "Completion requests holding a --max-inflight slot (0 without the limit)", registry)
          .Add({});
  Gauge& gate_waiting =
      named(prometheus::BuildGauge(), "glm_proxy_queued_requests",
            "Completion requests waiting in line for a --max-inflight slot", registry)
          .Add({});

  Family<Counter>& metaserver_requests =
      named(prometheus::BuildCounter(), "glm_proxy_metaserver_requests_total",
            "Decoder callbacks to /v1/metaserver (layerwise mode), by HTTP status", registry);
  Histogram& metaserver_wait =
      named(prometheus::BuildHistogram(), "glm_proxy_metaserver_wait_seconds",
            "Layerwise mode: time from a decode request's sending to its decoder's callback",
            registry)
          .Add({}, latency_buckets());

  Counter& request_counter(endpoint e, unsigned code) {
    return requests.Add({{"endpoint", std::string(to_string(e))}, {"code", std::to_string(code)}});
  }
  Histogram& duration_of(endpoint e) {
    return request_duration.Add({{"endpoint", std::string(to_string(e))}}, latency_buckets());
  }
  Histogram& prefill_of(const std::string& backend) {
    return prefill_duration.Add({{"backend", backend}}, latency_buckets());
  }
  Counter& error_counter(balancer::role role, const std::string& backend, failure_kind kind) {
    return upstream_errors.Add(
        {{"role", role_label(role)}, {"backend", backend}, {"kind", std::string(to_string(kind))}});
  }

  // The series of the label values known at start, at 0.
  void start_known_series() {
    for (endpoint e : all_endpoints) {
      duration_of(e);
      // 200 is the one status every endpoint gives; error codes appear with their first answer.
      if (e != endpoint::invalid && e != endpoint::other) request_counter(e, 200);
    }
    for (refusal_reason r : all_refusal_reasons) {
      refusals.Add({{"reason", std::string(to_string(r))}});
    }
    // What /v1/metaserver answers: ok, bad input, not a decoder, unknown id, repeated id, failed.
    for (unsigned code : {200u, 400u, 403u, 404u, 409u, 502u}) {
      metaserver_requests.Add({{"code", std::to_string(code)}});
    }
    for (auto role : {balancer::role::prefill, balancer::role::decode}) {
      retries.Add({{"role", role_label(role)}});
    }
    named(prometheus::BuildGauge(), "glm_proxy_build_info", "glm-proxy version", registry)
        .Add({{"version", GLM_PROXY_VERSION}})
        .Set(1);
  }

  // The per-backend series of an instance, at 0 until its first event. Called at every scrape
  // (Add returns the existing series), so instances added at run time get theirs too.
  void know_instance(const balancer::instance_snapshot& i) {
    const std::string backend = i.address.to_string();
    for (failure_kind kind : all_failure_kinds) error_counter(i.kind, backend, kind);
    for (std::string_view reason : scrape_error_reasons()) {
      scrape_errors.Add(
          {{"role", role_label(i.kind)}, {"backend", backend}, {"reason", std::string(reason)}});
    }
    if (i.kind == balancer::role::prefill) {
      prefill_of(backend);
      prefill_without_kv.Add({{"backend", backend}});
    }
  }
};

metrics::metrics() : f_(std::make_unique<families>()) {
  f_->start_known_series();
}

metrics::~metrics() = default;

void metrics::request_done(endpoint e, unsigned code, double seconds) {
  f_->request_counter(e, code).Increment();
  f_->duration_of(e).Observe(seconds);
}

void metrics::time_to_first_token(double seconds) {
  f_->ttft.Observe(seconds);
}
void metrics::inter_token(double seconds) {
  f_->inter_token.Observe(seconds);
}

void metrics::prefill_duration(const std::string& backend, double seconds) {
  f_->prefill_of(backend).Observe(seconds);
}

void metrics::upstream_error(balancer::role role, const std::string& backend, failure_kind kind) {
  f_->error_counter(role, backend, kind).Increment();
}

void metrics::prefill_without_kv(const std::string& backend) {
  f_->prefill_without_kv.Add({{"backend", backend}}).Increment();
}

void metrics::retry(balancer::role role) {
  f_->retries.Add({{"role", role_label(role)}}).Increment();
}

void metrics::recompute() {
  f_->recomputes.Increment();
}
void metrics::client_disconnect() {
  f_->client_disconnects.Increment();
}
void metrics::stream_events(std::size_t n) {
  f_->stream_events.Increment(static_cast<double>(n));
}
void metrics::connection_opened() {
  f_->connections.Increment();
}
void metrics::connection_closed() {
  f_->connections.Decrement();
}

void metrics::refused(refusal_reason reason) {
  f_->refusals.Add({{"reason", std::string(to_string(reason))}}).Increment();
}

void metrics::scrape_error(balancer::role role, const std::string& backend,
                           std::string_view reason) {
  f_->scrape_errors
      .Add({{"role", role_label(role)}, {"backend", backend}, {"reason", std::string(reason)}})
      .Increment();
}

void metrics::prefill_fallback() {
  f_->prefill_fallbacks.Increment();
}

void metrics::metaserver_request(unsigned code) {
  f_->metaserver_requests.Add({{"code", std::to_string(code)}}).Increment();
}

void metrics::metaserver_wait(double seconds) {
  f_->metaserver_wait.Observe(seconds);
}

void metrics::inflight_gate_state(std::size_t inflight, std::size_t waiting) {
  f_->gate_inflight.Set(static_cast<double>(inflight));
  f_->gate_waiting.Set(static_cast<double>(waiting));
}

std::string metrics::serialize(const balancer::balancer& lb) const {
  const auto snapshot = lb.instances();
  for (const auto& i : snapshot) f_->know_instance(i);
  auto collected = f_->registry.Collect();
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
  // Routing: read from the balancer like the gauges above (it keeps the counts under its lock).
  auto& decisions =
      named(prometheus::BuildCounter(), "glm_proxy_route_decisions_total",
            "Backend choices by role, policy and reason (README \"Routing\")", backends);
  for (const auto& d : lb.route_decisions()) {
    decisions
        .Add({{"role", role_label(d.kind)},
              {"policy", std::string(balancer::to_string(d.policy))},
              {"reason", std::string(balancer::to_string(d.reason))}})
        .Increment(static_cast<double>(d.count));
  }
  auto& prompt_tokens =
      named(prometheus::BuildCounter(), "glm_proxy_prefill_prompt_tokens_total",
            "Prompt tokens the prefiller reported in its answers' usage", backends);
  auto& cached_tokens = named(prometheus::BuildCounter(), "glm_proxy_prefill_cached_tokens_total",
                              "Prompt tokens the prefiller reported found in its prefix cache "
                              "(usage.prompt_tokens_details.cached_tokens)",
                              backends);
  auto& mispredictions =
      named(prometheus::BuildCounter(), "glm_proxy_prefix_mispredictions_total",
            "Prefill answers that showed fewer cached tokens than confirmed prefix-index entries "
            "predicted",
            backends);
  auto& index_entries = named(prometheus::BuildGauge(), "glm_proxy_prefix_index_entries",
                              "Prefix blocks cache_aware remembers on the backend", backends);
  for (const auto& i : snapshot) {
    prometheus::Labels labels{{"role", role_label(i.kind)}, {"backend", i.address.to_string()}};
    if (i.kind == balancer::role::prefill) {
      prometheus::Labels backend{{"backend", i.address.to_string()}};
      prompt_tokens.Add(backend).Increment(static_cast<double>(i.prompt_tokens));
      cached_tokens.Add(backend).Increment(static_cast<double>(i.cached_tokens));
      mispredictions.Add(backend).Increment(static_cast<double>(i.mispredictions));
      index_entries.Add(backend).Set(static_cast<double>(i.prefix_entries));
    }
    inflight.Add(labels).Set(static_cast<double>(i.inflight));
    load.Add(labels).Set(i.kind == balancer::role::prefill
                             ? i.active_tokens + 0.3 * i.active_kv_cache
                             : i.active_tokens);
    healthy.Add(labels).Set(i.isolated || i.ejected ? 0 : 1);
    ejections.Add(labels).Increment(static_cast<double>(i.ejections_total));
  }
  // Load from the engines. Every instance has its series, at 0 before its first good read (and
  // with scraping off), so a dashboard sees 0 rather than no data; metrics_up tells the cases
  // apart.
  auto& reported = named(prometheus::BuildGauge(), "glm_proxy_backend_reported",
                         "What the backend's /metrics last reported: running and waiting "
                         "requests, KV cache usage (0..1); 0 before the first good read",
                         backends);
  auto& up = named(prometheus::BuildGauge(), "glm_proxy_backend_metrics_up",
                   "1 when the last read of the backend's /metrics gave a usable sample", backends);
  for (const auto& i : snapshot) {
    const std::string role = role_label(i.kind), backend = i.address.to_string();
    up.Add({{"role", role}, {"backend", backend}}).Set(i.engine_up ? 1 : 0);
    auto signal = [&](const char* name, double value) {
      reported.Add({{"role", role}, {"backend", backend}, {"signal", name}}).Set(value);
    };
    signal("running", i.engine ? static_cast<double>(i.engine->running) : 0);
    signal("waiting", i.engine ? static_cast<double>(i.engine->waiting) : 0);
    signal("kv_usage", i.engine ? i.engine->kv_usage : 0);
  }
  auto backend_families = backends.Collect();
  collected.insert(collected.end(), backend_families.begin(), backend_families.end());
  return prometheus::TextSerializer().Serialize(collected);
}

}  // namespace glm::proxy
