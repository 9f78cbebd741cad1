#pragma once

#include <string>

#include "balancer/balancer.hpp"

namespace glm::proxy {

// The GET /healthcheck body: the reference proxy's fields, then every instance and its state.
//
//   {"status":"ok","prefill_instances":2,"decode_instances":2,"request_num":0,
//    "instances":[{"role":"prefill","address":"10.0.0.1:6700","state":"active","inflight":0,
//                  "consecutive_failures":0,"ejections":0}, ...]}
//
// prefill_instances / decode_instances count the configured instances that are not on their way
// out (ejected ones included), as before. state is one of
//   active    in rotation;
//   ejected   out of rotation after consecutive failures; "retry_in_seconds" says when it is
//   probed; probing   its ejection time is up: back in rotation once a GET /v1/models probe
//   succeeds; isolated  removed through /instances/remove, gone once the requests holding it have
//   ended; pending   added through /instances/add, waiting for its first successful probe.
// With --scrape-interval > 0, each instance in rotation or out of it also has
//   "engine":{"up":true,"running":3,"waiting":0,"kv_usage":0.4100,"age_seconds":0.052,
//             "fresh":true,"saturated":false}
// its /metrics' last good report and that report's age ("up" alone before the first one).
// Instances come in the order they were added, pending ones last. status is "ok", or "degraded"
// when a role has no instance in rotation; the answer is a 200 either way, since the proxy itself
// is up and tells clients so with fast 503s.
//
// Thread safety: reads the balancer through its thread-safe accessors; call from any thread.
std::string health_report(const balancer::balancer& lb);

}  // namespace glm::proxy
