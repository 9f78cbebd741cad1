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

TEST_CASE("sse_rewrite rewrites the same whether events come one per read or all in one") {
  // The relay writes what one feed() returns as one chunk: a read holding every event must give
  // the client the same bytes as one read per event, usage rewrite included.
  std::vector<std::size_t> per_event;
  for (std::size_t at = plain_stream.find("\n\n"); at != std::string::npos;
       at = plain_stream.find("\n\n", at + 2)) {
    if (at + 2 < plain_stream.size()) per_event.push_back(at + 2);
  }
  generation_progress one_progress;
  auto whole = run(plain_stream, {}, opts(true, 42), one_progress);
  generation_progress each_progress;
  auto each = run(plain_stream, per_event, opts(true, 42), each_progress);
  REQUIRE(whole.out == each.out);
  REQUIRE(whole.events == 5);
  REQUIRE(each.events == 5);
  REQUIRE(whole.out.find("\"cached_tokens\":42") != std::string::npos);
  REQUIRE(one_progress.text == each_progress.text);
  for (std::size_t cut = 1; cut < plain_stream.size(); ++cut) {
    for (std::size_t second : {cut + 1, cut + 7, plain_stream.size()}) {
      if (second >= plain_stream.size()) second = plain_stream.size();
      generation_progress progress;
      auto r = run(plain_stream, {cut, second}, opts(true, 42), progress);
      REQUIRE(r.out == whole.out);
      REQUIRE(r.events == 5);
    }
  }

  // All in one read: the untouched events before the usage chunk are one view, then the
  // rewritten usage chunk, then [DONE]: one gather write of three pieces, not one per event.
  generation_progress progress;
  sse_rewrite rewrite(opts(true, 42), progress);
  const auto& parts = rewrite.feed(plain_stream);
  REQUIRE(parts.size() == 3);
  REQUIRE(rewrite.events() == 5);
  REQUIRE(parts[0] == plain_stream.substr(0, plain_stream.find("data: {\"choices\":[{\"index\":0,"
                                                               "\"text\":\"\"")));
  REQUIRE(parts[2] == "data: [DONE]\n\n");
}

TEST_CASE("sse_rewrite hides a recomputed chunk that arrives in one read with tokens and [DONE]") {
  const std::string tokens =
      "data: {\"choices\":[{\"index\":0,\"text\":\" x\"}]}\n\n"
      "data: {\"choices\":[{\"index\":0,\"text\":\" y\"}]}\n\n";
  const std::string stream =
      tokens +
      "data: {\"choices\":[{\"index\":0,\"text\":\"\",\"stop_reason\":\"recomputed\"}]}\n\n"
      "data: [DONE]\n\n";
  generation_progress progress;
  sse_rewrite rewrite(opts(true, 42), progress);
  std::string out;
  for (auto part : rewrite.feed(stream)) out += part;
  REQUIRE(rewrite.recomputed());
  REQUIRE(out == tokens);
  REQUIRE(rewrite.events() == 2);
  REQUIRE(progress.text == " x y");
  REQUIRE(progress.chunks == 3);
  REQUIRE(rewrite.pending().empty());
  // Split before and after: the same.
  for (std::size_t cut = 1; cut < stream.size(); cut += 3) {
    generation_progress p;
    auto r = run(stream, {cut}, opts(true, 42), p);
    REQUIRE(r.out == tokens);
    REQUIRE(r.recomputed);
  }
}
