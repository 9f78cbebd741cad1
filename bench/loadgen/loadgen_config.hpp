#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace glm::loadgen {

// One host:port the clients send to; clients are spread over the list round-robin.
struct target {
  std::string host;
  std::uint16_t port = 0;
};

// Everything glm-loadgen is told at start. Filled once by main(), then read-only and shared by
// every client on every thread.
struct loadgen_config {
  std::vector<target> targets;
  std::string path = "/v1/completions";
  std::string model = "mock-model";
  int clients = 32;                // concurrent streams, one keep-alive connection each
  std::int64_t requests = 0;       // total requests (closed loop); 0: until duration
  double duration_s = 0;           // closed loop: no new request after this; 0: none
  std::int64_t max_tokens = 16;    // T: every answer must carry exactly this many tokens
  std::int64_t prompt_words = 64;  // prompt size, unless prompt_bytes is set
  std::int64_t prompt_bytes = 0;   // prompt size in bytes (e.g. 1048576), overrides words
  std::string extra_json;          // raw members added to the body, e.g. "mock_fault":"x"
  bool check_order = true;         // tokens must read " tok0", " tok1", ... in order
  double request_timeout_s = 120;  // whole-request deadline, connect excluded
  int threads = 1;                 // io_context threads; clients spread over them
  std::int64_t hold = 0;           // > 0: hold mode, that many streams open at once
  double ramp_s = 5;               // hold mode: connects spread over this long
  bool json_only = false;          // print only the RESULT line
  std::string label;               // copied into the RESULT line

  // Multi-turn chat conversations (conversation_mode): `conversations` of `turns` turns each,
  // `clients` of them at once. Each turn resends the conversation so far, the answer received
  // and a new user message of about `turn_bytes`; conversation k belongs to group k % groups,
  // whose system prompt of `system_bytes` its conversations share.
  std::int64_t conversations = 0;   // K; 0: the single-request closed loop instead
  std::int64_t turns = 8;           // T
  std::int64_t turn_bytes = 1024;   // new user text a turn
  std::int64_t groups = 8;          // G
  std::int64_t system_bytes = 256;  // S
  bool session_header = false;      // X-Session-Id: conv-<k> on every turn
  std::uint64_t seed = 1;           // the text of every message derives from it

  bool hold_mode() const { return hold > 0; }
  bool conversation_mode() const { return conversations > 0; }
};

}  // namespace glm::loadgen
