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
  std::int64_t cached_tokens = 0;
  int threads = 1;
  int fail_status = 0;  // 0: answer normally
  // uvicorn closes a keep-alive connection idle for 5 s; the proxy's pool must cope with that.
  std::chrono::milliseconds keep_alive_timeout{5000};

  // Set by mock_server after bind(): the address and port written in kv_transfer_params.
  std::string listen_host;
  std::uint16_t listen_port = 0;
};

}  // namespace glm::mock
