#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace glm::mock {

// What one mock-vllm process plays. Filled once by main() from the command line, completed by
// mock_server once the port is bound, then read-only: sessions on every thread read it unguarded.
struct mock_config {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string model = "mock-model";
  std::string engine_id;  // empty: "mock-<bound port>"
  std::chrono::milliseconds prefill_delay{0};
  std::chrono::milliseconds token_interval{0};
  // A stream's events (tokens, usage, [DONE], the last chunk) go out in one write when the last
  // is ready, as a decoder far ahead of its reader delivers them: the relay's coalesced shape.
  bool burst = false;
  std::int64_t cached_tokens = 0;
  int threads = 1;
  int fail_status = 0;  // 0: answer normally
  // uvicorn closes a keep-alive connection idle for 5 s; the proxy's pool must cope with that.
  std::chrono::milliseconds keep_alive_timeout{5000};

  // The simulated prefix cache (see prefix_cache and prompt_renderer). All off by default, so
  // usage and timing stay as the tests that predate them expect.
  std::int64_t prefix_cache_blocks = 0;  // 0: no cache; prefix_cache::unbounded: no eviction
  std::int64_t block_size = 16;          // tokens per cache block
  // Bytes of rendered prompt per token for usage.prompt_tokens; 0 counts whitespace-separated
  // words instead (the historical count). A prefix cache needs bytes: main() makes it 4.
  std::int64_t chars_per_token = 0;
  std::int64_t prefill_us_per_token = 0;  // prefill time added per uncached prompt token
  int max_concurrent_prefills = 0;        // 0: no limit; beyond it prefills wait, FIFO
  std::int64_t num_gpu_blocks = 0;        // for /metrics; 0: the cache's capacity, else 65536

  // GET /metrics (vLLM's Prometheus text): label sets per family (engine="0", "1", ...) and a
  // fault mode ("" none, "500", "hang", "garbage", "nan", "missing", "huge"); POST /mock/load
  // can change the fault at run time.
  int metrics_engines = 2;
  std::string metrics_fault;

  // The vllm-ascend layerwise PD mode (Mooncake layerwise connector): a decode request whose
  // kv_transfer_params carry a "metaserver" URL first POSTs the connector's JSON there, once per
  // prompt, and decodes only once every call was answered 2xx (the KV cache has "arrived"); any
  // other outcome leaves it waiting for KV that never comes, as the real connector does.
  bool layerwise = false;
  // Bound on each metaserver call attempt (connect, write, read); the connector itself has none.
  std::chrono::milliseconds metaserver_timeout{30000};

  bool counts_chars() const { return chars_per_token > 0; }

  // Set by mock_server after bind(): the address and port written in kv_transfer_params.
  std::string listen_host;
  std::uint16_t listen_port = 0;
};

}  // namespace glm::mock
