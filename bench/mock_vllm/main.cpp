// mock-vllm: a stand-in for a vLLM OpenAI API server (prefiller, decoder or plain instance) for
// glm-proxy's end-to-end tests, demo and benchmarks. See bench/mock_vllm/README.md.
#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>

#include "bench/mock_vllm/mock_config.hpp"
#include "bench/mock_vllm/mock_server.hpp"

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
  CLI11_PARSE(app, argc, argv);
  if (config.fail_status != 0 && config.fail_status < 100) {
    std::cerr << "mock-vllm: --fail-status must be 0 or an HTTP status 100-599\n";
    return 2;
  }
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
