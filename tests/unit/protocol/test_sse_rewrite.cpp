#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/sse_rewrite.hpp"

using glm::protocol::generation_progress;
using glm::protocol::sse_rewrite;

namespace {

// What a rewrite produced from a stream cut into pieces.
struct rewritten {
  std::string out;
  std::size_t events = 0;
  bool recomputed = false;
};

rewritten run(std::string_view input, const std::vector<std::size_t>& cuts,
              sse_rewrite::options opts, generation_progress& progress) {
  sse_rewrite rewrite(opts, progress);
  rewritten r;
  std::size_t last = 0;
  auto feed = [&](std::string_view piece) {
    for (std::string_view part : rewrite.feed(piece)) r.out += part;
    r.events += rewrite.events();
  };
  for (std::size_t cut : cuts) {
    feed(input.substr(last, cut - last));
    last = cut;
  }
  feed(input.substr(last));
  r.out += rewrite.pending();
  r.recomputed = rewrite.recomputed();
  return r;
}

sse_rewrite::options opts(bool include_usage, std::int64_t cached = 0,
                          std::size_t max_event_bytes = std::size_t(4) << 20) {
  sse_rewrite::options o;
  o.include_usage = include_usage;
  o.cached_tokens = cached;
  o.max_event_bytes = max_event_bytes;
  return o;
}

const std::string plain_stream =
    "data: {\"choices\":[{\"index\":0,\"text\":\" a\"}]}\n\n"
    ": keep-alive comment\n\n"
    "data: {\"choices\":[{\"index\":0,\"text\":\" b\\n\"}]}\r\n\r\n"
    "data: {\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}],"
    "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n"
    "data: [DONE]\n\n";

}  // namespace

TEST_CASE("sse_rewrite passes a stream through byte for byte however it is cut") {
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::size_t> cuts;
    for (std::size_t i = 1; i < plain_stream.size(); ++i) {
      if (rng() % 9 == 0) cuts.push_back(i);
    }
    generation_progress progress;
    auto r = run(plain_stream, cuts, opts(false), progress);
    REQUIRE(r.out == plain_stream);
    REQUIRE(r.events == 5);
    REQUIRE_FALSE(r.recomputed);
    // The text generated so far, still JSON-escaped, for a recompute.
    REQUIRE(progress.text == " a b\\n");
    REQUIRE(progress.chunks == 3);
  }
}

TEST_CASE("sse_rewrite writes the prefiller's cached_tokens into the usage chunk") {
  generation_progress progress;
  auto r = run(plain_stream, {17, 90}, opts(true, 42), progress);
  REQUIRE(
      r.out.find(R"("usage":{"prompt_tokens_details":{"cached_tokens":42},"prompt_tokens":5)") !=
      std::string::npos);
  // Everything else is untouched.
  REQUIRE(r.out.starts_with(
      plain_stream.substr(0, plain_stream.find("data: {\"choices\":[{\"index\":0,\"text\":\"\""))));
  REQUIRE(r.out.ends_with("data: [DONE]\n\n"));
  // Without include_usage the chunk passes as it is.
  generation_progress other;
  REQUIRE(run(plain_stream, {}, opts(false, 42), other).out == plain_stream);
}

TEST_CASE("sse_rewrite hides a recomputed chunk and everything after it") {
  const std::string before = "data: {\"choices\":[{\"index\":0,\"text\":\" x\"}]}\n\n";
  const std::string stream =
      before +
      "data: {\"choices\":[{\"index\":0,\"text\":\"\",\"stop_reason\":\"recomputed\"}]}\n\n"
      "data: [DONE]\n\n";
  for (std::size_t cut = 1; cut < stream.size(); ++cut) {
    generation_progress progress;
    auto r = run(stream, {cut}, opts(false), progress);
    REQUIRE(r.recomputed);
    REQUIRE(r.out == before);
    REQUIRE(r.events == 1);
    REQUIRE(progress.chunks == 2);  // the recomputed chunk counts for the budget
    REQUIRE(progress.text == " x");
  }
}

TEST_CASE("sse_rewrite passes an event larger than its limit through unframed, losing nothing") {
  std::string big = "data: " + std::string(300, 'x') + "\n\ndata: {\"a\":1}\n\n";
  for (std::size_t cut : {1u, 5u, 100u, 250u, 305u}) {
    generation_progress progress;
    auto r = run(big, {cut}, opts(false, 0, 64), progress);
    REQUIRE(r.out == big);
  }
}

TEST_CASE("sse_rewrite keeps an unfinished last event for the end of the stream") {
  generation_progress progress;
  sse_rewrite rewrite(opts(false), progress);
  auto parts = rewrite.feed("data: {\"a\":1}\n\ndata: tail");
  std::string out;
  for (auto p : parts) out += p;
  REQUIRE(out == "data: {\"a\":1}\n\n");
  REQUIRE(rewrite.pending() == "data: tail");
}
