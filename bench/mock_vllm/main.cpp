// mock-vllm: a stand-in for a vLLM OpenAI API server (prefiller, decoder or plain instance) for
// glm-proxy's end-to-end tests, demo and benchmarks. See bench/mock_vllm/README.md.
#include <sys/resource.h>

#include <charconv>
#include <csignal>
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>

#include "bench/mock_vllm/mock_config.hpp"
#include "bench/mock_vllm/mock_server.hpp"
#include "bench/mock_vllm/prefix_cache.hpp"
#include "bench/mock_vllm/vllm_metrics.hpp"

namespace {

// Thousands of concurrent streams need thousands of descriptors; the soft limit is often 1024.
void raise_fd_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == limit.rlim_max) return;
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) std::perror("mock-vllm: setrlimit(RLIMIT_NOFILE)");
}

}  // namespace

int main(int argc, char** argv) {
  glm::mock::mock_config config;
  int prefill_delay_ms = 0;
  int token_interval_ms = 0;
  int keep_alive_timeout_ms = static_cast<int>(config.keep_alive_timeout.count());

  CLI::App app{"mock-vllm: a fake vLLM server for glm-proxy's tests and benchmarks"};
  app.add_option("--host", config.host, "listen address")->capture_default_str();
  app.add_option("--port", config.port, "listen port, 0 for any")->capture_default_str();
  app.add_option("--model", config.model, "model name in answers")->capture_default_str();
  app.add_option("--engine-id", config.engine_id,
                 "remote_engine_id in kv_transfer_params (default mock-<port>)");
  app.add_option("--prefill-delay-ms", prefill_delay_ms,
                 "delay before a prefill answer, and before a plain request's first token")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--token-interval-ms", token_interval_ms, "delay before each generated token")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("--burst", config.burst,
               "send a stream's events in one write once the last is generated (with "
               "--token-interval-ms 0: all at once)");
  app.add_option("--cached-tokens", config.cached_tokens,
                 "usage.prompt_tokens_details.cached_tokens of a prefill (or plain) answer")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--threads", config.threads, "io_context threads")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--fail-status", config.fail_status,
                 "if not 0, every completion request answers this status")
      ->check(CLI::Range(0, 599))
      ->capture_default_str();
  app.add_option("--keep-alive-timeout-ms", keep_alive_timeout_ms,
                 "close a connection idle this long between requests (uvicorn: 5000); 0 never")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  std::string prefix_cache_blocks = "0";
  app.add_option("--prefix-cache-blocks", prefix_cache_blocks,
                 "simulated prefix cache: capacity in blocks (LRU), 0 off, or 'unbounded'")
      ->capture_default_str();
  app.add_option("--block-size", config.block_size, "tokens per prefix-cache block")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("--chars-per-token", config.chars_per_token,
                 "bytes of rendered prompt per usage token; 0 counts words (4 with a prefix cache)")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  app.add_option("--prefill-us-per-token", config.prefill_us_per_token,
                 "prefill time added per uncached prompt token, in microseconds")
      ->check(CLI::Range(0, 1'000'000))
      ->capture_default_str();
  app.add_option("--max-concurrent-prefills", config.max_concurrent_prefills,
                 "prefills that run at once; more wait in arrival order (0: no limit)")
      ->check(CLI::Range(0, 1'000'000))
      ->capture_default_str();
  app.add_option("--num-gpu-blocks", config.num_gpu_blocks,
                 "num_gpu_blocks on /metrics (0: the cache's capacity, or 65536)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--metrics-engines", config.metrics_engines,
                 "engine label sets per vllm:* family on /metrics")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--metrics-fault", config.metrics_fault,
                 "GET /metrics misbehaves: none, 500, hang, garbage, nan, missing, huge")
      ->check([](const std::string& v) {
        return glm::mock::vllm_metrics::parse_fault(v) ? std::string()
                                                       : "not a /metrics fault: " + v;
      });
  app.add_flag("--layerwise", config.layerwise,
               "decode requests with kv_transfer_params.metaserver call it back first, as the "
               "Mooncake layerwise connector does (vllm-ascend's layerwise PD mode)");
  int metaserver_timeout_ms = static_cast<int>(config.metaserver_timeout.count());
  app.add_option("--metaserver-timeout-ms", metaserver_timeout_ms,
                 "bound on each metaserver call attempt (connect, write, read) in --layerwise")
      ->check(CLI::Range(1, 3'600'000))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  config.metaserver_timeout = std::chrono::milliseconds(metaserver_timeout_ms);
  if (config.fail_status != 0 && config.fail_status < 100) {
    std::cerr << "mock-vllm: --fail-status must be 0 or an HTTP status 100-599\n";
    return 2;
  }
  if (prefix_cache_blocks == "unbounded") {
    config.prefix_cache_blocks = glm::mock::prefix_cache::unbounded;
  } else {
    const char* first = prefix_cache_blocks.data();
    const char* last = first + prefix_cache_blocks.size();
    auto [end, ec] = std::from_chars(first, last, config.prefix_cache_blocks);
    if (ec != std::errc{} || end != last || config.prefix_cache_blocks < 0) {
      std::cerr << "mock-vllm: --prefix-cache-blocks must be a number of blocks or 'unbounded'\n";
      return 2;
    }
  }
  // The cache works on bytes of the rendered prompt; so must the token count it is compared with.
  if (config.prefix_cache_blocks != 0 && config.chars_per_token == 0) config.chars_per_token = 4;
  config.prefill_delay = std::chrono::milliseconds(prefill_delay_ms);
  config.token_interval = std::chrono::milliseconds(token_interval_ms);
  config.keep_alive_timeout = std::chrono::milliseconds(keep_alive_timeout_ms);

  raise_fd_limit();
  // Asio sends with MSG_NOSIGNAL; this covers a closed stdout.
  std::signal(SIGPIPE, SIG_IGN);

  glm::mock::mock_server server(std::move(config));
  std::string what;
  if (const auto ec = server.listen(what)) {
    std::cerr << "mock-vllm: " << what << ": " << ec.message() << "\n";
    return 1;
  }
  // The one line tests wait for before they send anything.
  std::cout << "listening on " << server.listening_address() << std::endl;
  server.run();
  return 0;
}
