#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "balancer/backend_address.hpp"
#include "balancer/route_policy.hpp"

namespace glm::proxy {

// How a completion request is split between prefiller and decoder (README "Layerwise mode").
enum class pd_mode : unsigned char {
  standard,   // prefill first, then decode with the prefiller's kv_transfer_params
  layerwise,  // vllm-ascend's layerwise mode: decode first; the decoder calls /v1/metaserver back
};

// Everything glm-proxy is told at start. Filled once by parse_command_line(), then read-only and
// shared by every worker thread. A SIGHUP reads a fresh copy (see config_reload); the one the
// workers share is never written.
struct config {
  // The reference proxy's flags, same names and defaults.
  std::string host = "localhost";
  std::uint16_t port = 8000;
  std::vector<balancer::backend_address> prefillers{{"localhost", 8001}};
  std::vector<balancer::backend_address> decoders{{"localhost", 8002}};
  int max_retries = 3;
  double retry_delay = 0.001;  // seconds; attempt k waits retry_delay * 2^(k-1)
  int max_waiting_retries = 3;
  double waiting_retry_interval = 10;  // seconds
  int workers = 1;
  std::string log_level = "INFO";
  std::string log_format = "text";  // text, or json: one object per line

  // Limits and timeouts. A long context needs a long prefill, hence the generous defaults.
  double connect_timeout = 10;       // seconds, per upstream connect
  double prefill_timeout = 600;      // seconds, the whole prefill answer
  double stream_idle_timeout = 600;  // seconds, the largest gap between decode bytes
  double client_write_timeout = 60;  // seconds, per write to the client
  double header_timeout = 30;        // seconds to receive a request's headers (slowloris)
  double idle_timeout = 75;          // seconds a keep-alive client connection may sit idle
  double drain_timeout = 30;         // seconds in-flight requests get after SIGTERM/SIGINT
  std::size_t max_body_bytes = 64u << 20;
  std::size_t max_header_bytes = 64u << 10;
  std::size_t max_connections = 10000;  // client connections open at once; 0 = no limit
  std::size_t max_inflight = 0;         // completion requests in flight; 0 = no limit
  double queue_timeout = 0;  // seconds a request over max_inflight may wait; 0 = refuse at once

  // Outlier ejection: eject_after consecutive failures take an instance out of rotation for
  // eject_seconds * 2^(ejections-1), until a probe succeeds.
  int eject_after = 3;
  double eject_seconds = 5;

  // Routing (README "Routing"): the policy of each role and cache_aware's thresholds. The
  // policies' names come in as text and are turned into the enums once parsing succeeded.
  balancer::route_options routing;

  // A prefill answer is one token and kv_transfer_params: a few KiB. Past this cap the attempt
  // fails like a garbled answer (502, retried elsewhere), so a broken prefiller cannot make the
  // proxy buffer --max-body-bytes per request. Raise it for clients asking for prompt_logprobs.
  std::size_t max_prefill_answer_bytes = 4u << 20;

  // Load from the engines (README "Load from the engines"). scrape_interval: seconds between two
  // reads of every backend's GET /metrics; 0 turns it off and routing uses the proxy's own counts
  // only. kv_high: the KV usage from which an instance gets no new requests while another is
  // below. max_metrics_bytes: past it a /metrics body is refused whole (a scrape error).
  double scrape_interval = 0;
  double kv_high = 0.95;
  std::size_t max_metrics_bytes = 8u << 20;
  // What a request does when no prefiller can serve it: refused (off), or decoded on the chosen
  // decoder without kv_transfer_params, which then prefills locally (decode).
  enum class prefill_fallback { off, decode };
  prefill_fallback fallback = prefill_fallback::off;
  // The PD mode. In layerwise mode decoders call metaserver_url back (default, filled in by the
  // server once it listens: http://<host>:<bound port>/v1/metaserver); a request whose callbacks
  // have not all come within metaserver_timeout seconds (default: prefill_timeout) is ended.
  pd_mode mode = pd_mode::standard;
  std::string metaserver_url;
  double metaserver_timeout = 0;

  // Client-facing security. api_key guards the inference endpoints (Bearer); admin_token guards
  // /instances/* and /reset_prefix_cache, which without it answer loopback clients only.
  std::string api_key;
  std::string admin_token;

  // Operations. config_file is the --config path ("" without one): SIGHUP re-reads it. reuse_port
  // sets SO_REUSEPORT, so a new glm-proxy can take over the port while this one drains.
  std::string config_file;
  bool reuse_port = false;

  // From the environment: OPENAI_API_KEY, sent as "Authorization: Bearer ..." to the backends
  // only when it is set.
  std::string backend_api_key;
};

}  // namespace glm::proxy
