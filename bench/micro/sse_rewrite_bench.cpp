// The relay's per-event work (protocol::sse_rewrite: framing, the recompute check, keeping choice
// 0's text, the usage rewrite) on vLLM-shaped streams, in nanoseconds per event. No I/O.
//
//   build/sse-rewrite-bench [rounds]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "protocol/sse_rewrite.hpp"

namespace {

using glm::protocol::generation_progress;
using glm::protocol::sse_rewrite;

// `tokens` events as vLLM streams them, the usage chunk and [DONE], in one string.
std::string stream(bool chat, int tokens) {
  std::string s;
  for (int i = 0; i < tokens; ++i) {
    if (chat) {
      s +=
          R"(data: {"id":"chatcmpl-5b7aef57bec74c97b190dfa905809460","object":"chat.completion.chunk",)"
          R"("created":1764780000,"model":"glm-5.2","choices":[{"index":0,"delta":{"content":" tok)" +
          std::to_string(i) + R"("},"logprobs":null,"finish_reason":null}]})";
    } else {
      s += R"(data: {"id":"cmpl-5b7aef57bec74c97b190dfa905809460","object":"text_completion",)"
           R"("created":1764780000,"model":"glm-5.2","choices":[{"index":0,"text":" tok)" +
           std::to_string(i) +
           R"(","logprobs":null,"finish_reason":null,"stop_reason":null}],)"
           R"("usage":null})";
    }
    s += "\n\n";
  }
  s += R"(data: {"id":"cmpl-5b7aef57","object":"text_completion","created":1764780000,)"
       R"("model":"glm-5.2","choices":[],"usage":{"prompt_tokens":64,"total_tokens":80,)"
       R"("completion_tokens":16,"prompt_tokens_details":null}})"
       "\n\ndata: [DONE]\n\n";
  return s;
}

// Feeds `wire` to a fresh rewrite in pieces of `read` bytes, `rounds` times; ns per event.
double measure(const std::string& wire, std::size_t read, int rounds, std::size_t& sink) {
  std::size_t events = 0;
  auto start = std::chrono::steady_clock::now();
  for (int r = 0; r < rounds; ++r) {
    generation_progress progress;
    sse_rewrite rewrite({true, 7}, progress);
    for (std::size_t at = 0; at < wire.size(); at += read) {
      for (auto part : rewrite.feed(std::string_view(wire).substr(at, read))) sink += part.size();
      events += rewrite.events();
    }
    sink += progress.text.size();
  }
  std::chrono::duration<double, std::nano> took = std::chrono::steady_clock::now() - start;
  return took.count() / static_cast<double>(events);
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 20000;
  std::size_t sink = 0;
  std::printf("sse_rewrite per event (16 tokens + usage + [DONE] a stream, %d streams)\n", rounds);
  for (bool chat : {false, true}) {
    const std::string wire = stream(chat, 16);
    for (std::size_t read : {std::size_t(4096), std::size_t(512)}) {
      std::printf("  %-11s reads of %4zu bytes: %7.1f ns/event\n", chat ? "chat" : "completions",
                  read, measure(wire, read, rounds, sink));
    }
  }
  std::printf("reproduce: build/sse-rewrite-bench %d   (checksum %zu)\n", rounds, sink);
  return 0;
}
