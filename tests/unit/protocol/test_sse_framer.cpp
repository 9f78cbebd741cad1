#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/sse_framer.hpp"

using glm::protocol::sse_framer;

namespace {

// What a framer produced from a sequence of pieces.
struct framed {
  std::vector<std::string> events;
  std::string pending;
  bool ok = true;

  // Everything the framer handed out, then what it still holds: must be the input.
  std::string joined() const {
    std::string out;
    for (const auto& e : events) out += e;
    return out + pending;
  }
};

framed feed_pieces(const std::vector<std::string_view>& pieces,
                   std::size_t max_event_bytes = std::size_t(1) << 20) {
  sse_framer framer(max_event_bytes);
  framed out;
  for (std::string_view piece : pieces) {
    out.ok = framer.feed(piece, [&](std::string_view e) { out.events.emplace_back(e); });
    if (!out.ok) break;
  }
  out.pending = std::string(framer.pending());
  return out;
}

framed feed_at(std::string_view input, const std::vector<std::size_t>& cuts) {
  std::vector<std::string_view> pieces;
  std::size_t last = 0;
  for (std::size_t cut : cuts) {
    pieces.push_back(input.substr(last, cut - last));
    last = cut;
  }
  pieces.push_back(input.substr(last));
  return feed_pieces(pieces);
}

// A stream with everything a decoder (or a proxy in front of it) may send: "\n" and "\r\n" line
// ends, comments, multi-line events, blank lines between events, an unfinished tail.
const std::string stream =
    "data: {\"id\":\"1\",\"choices\":[{\"text\":\"a\"}]}\n\n"
    ": ping\n\n"
    "event: message\r\nid: 7\r\ndata: {\"text\":\"b\\n\"}\r\n\r\n"
    "\n\n"
    "data: one\ndata: two\n\n"
    "\r\n"
    "data: \r\r\n\n"
    ":\n\n"
    "data: [DONE]\n\n"
    "data: unfinished\n";

const std::vector<std::string> stream_events = {
    "data: {\"id\":\"1\",\"choices\":[{\"text\":\"a\"}]}\n\n",
    ": ping\n\n",
    "event: message\r\nid: 7\r\ndata: {\"text\":\"b\\n\"}\r\n\r\n",
    "\n\ndata: one\ndata: two\n\n",  // stray blank lines belong to the next event
    "\r\ndata: \r\r\n\n",
    ":\n\n",
    "data: [DONE]\n\n",
};

}  // namespace

TEST_CASE("one piece yields every complete event and keeps the tail", "[sse_framer]") {
  framed f = feed_pieces({stream});
  CHECK(f.ok);
  CHECK(f.events == stream_events);
  CHECK(f.pending == "data: unfinished\n");
  CHECK(f.joined() == stream);
}

TEST_CASE("every split into two or three pieces yields the same events", "[sse_framer]") {
  const framed whole = feed_pieces({stream});
  for (std::size_t i = 0; i <= stream.size(); ++i) {
    framed f = feed_at(stream, {i});
    INFO("cut at " << i);
    REQUIRE(f.ok);
    REQUIRE(f.events == whole.events);
    REQUIRE(f.pending == whole.pending);
  }
  for (std::size_t i = 0; i <= stream.size(); ++i) {
    for (std::size_t j = i; j <= stream.size(); ++j) {
      framed f = feed_at(stream, {i, j});
      INFO("cuts at " << i << ", " << j);
      REQUIRE(f.events == whole.events);
      REQUIRE(f.joined() == stream);
    }
  }
}

TEST_CASE("one byte at a time yields the same events", "[sse_framer]") {
  std::vector<std::string_view> bytes;
  for (std::size_t i = 0; i < stream.size(); ++i)
    bytes.push_back(std::string_view(stream).substr(i, 1));
  framed f = feed_pieces(bytes);
  CHECK(f.ok);
  CHECK(f.events == stream_events);
  CHECK(f.pending == "data: unfinished\n");
}

TEST_CASE("random splits of random streams yield the same events", "[sse_framer]") {
  std::mt19937 rng(12345);
  // Small alphabet, so line ends, "\r" and blank lines come in every combination.
  const std::string_view alphabet = "\n\n\n\r\r:da ";
  for (int round = 0; round < 2000; ++round) {
    std::string input;
    const std::size_t length = rng() % 40;
    for (std::size_t i = 0; i < length; ++i) input += alphabet[rng() % alphabet.size()];
    const framed whole = feed_pieces({input});
    REQUIRE(whole.joined() == input);
    std::vector<std::size_t> cuts;
    for (std::size_t i = 1; i < input.size(); ++i) {
      if (rng() % 3 == 0) cuts.push_back(i);
    }
    framed f = feed_at(input, cuts);
    INFO("input " << Catch::Detail::stringify(input));
    REQUIRE(f.events == whole.events);
    REQUIRE(f.pending == whole.pending);
  }
}

TEST_CASE("a lone \\r is not a line end, however it is split", "[sse_framer]") {
  // "\r\r\n" is one line with text ("\r") ended by "\r\n", so no blank line: no event yet.
  const std::string input = "data: x\n\r\r\ndata: y\n\n";
  const framed whole = feed_pieces({input});
  REQUIRE(whole.events == std::vector<std::string>{input});
  for (std::size_t i = 0; i <= input.size(); ++i) {
    INFO("cut at " << i);
    CHECK(feed_at(input, {i}).events == whole.events);
  }
  std::vector<std::string_view> bytes;
  for (std::size_t i = 0; i < input.size(); ++i)
    bytes.push_back(std::string_view(input).substr(i, 1));
  CHECK(feed_pieces(bytes).events == whole.events);
}

TEST_CASE("complete events are views into the piece; a split one comes from the buffer",
          "[sse_framer]") {
  const std::string first = "data: a\n\ndata: b\n\ndata: c";
  const std::string second = "\n\ndata: d\n\n";
  sse_framer framer;
  std::vector<std::string_view> views;
  REQUIRE(framer.feed(first, [&](std::string_view e) { views.push_back(e); }));
  REQUIRE(views.size() == 2);
  CHECK(views[0] == "data: a\n\n");
  CHECK(views[0].data() == first.data());
  CHECK(views[1] == "data: b\n\n");
  CHECK(views[1].data() == first.data() + 9);
  CHECK(framer.pending() == "data: c");

  std::vector<std::string> events;
  std::vector<bool> inside;
  REQUIRE(framer.feed(second, [&](std::string_view e) {
    events.emplace_back(e);
    inside.push_back(e.data() >= second.data() && e.data() < second.data() + second.size());
  }));
  CHECK(events == std::vector<std::string>{"data: c\n\n", "data: d\n\n"});
  CHECK(inside == std::vector<bool>{false, true});
  CHECK(framer.pending().empty());
}

TEST_CASE("feeding nothing changes nothing", "[sse_framer]") {
  sse_framer framer;
  int calls = 0;
  CHECK(framer.feed("", [&](std::string_view) { ++calls; }));
  CHECK(framer.feed("data: x\n", [&](std::string_view) { ++calls; }));
  CHECK(framer.feed("", [&](std::string_view) { ++calls; }));
  CHECK(calls == 0);
  CHECK(framer.pending() == "data: x\n");
  CHECK(framer.feed("\n", [&](std::string_view e) {
    ++calls;
    CHECK(e == "data: x\n\n");
  }));
  CHECK(calls == 1);
}

TEST_CASE("max_event_bytes bounds only what the framer must keep", "[sse_framer]") {
  SECTION("an unfinished event longer than the limit fails") {
    framed f = feed_pieces({"data: 0123456789abcdef"}, 16);
    CHECK_FALSE(f.ok);
    CHECK(f.events.empty());
  }
  SECTION("an unfinished event of exactly the limit is kept") {
    framed f = feed_pieces({"data: 0123456789"}, 16);
    CHECK(f.ok);
    CHECK(f.pending == "data: 0123456789");
  }
  SECTION("the limit counts the bytes kept from earlier pieces") {
    framed f = feed_pieces({"data: 01", "23456789", "a"}, 16);
    CHECK_FALSE(f.ok);
  }
  SECTION("a complete event inside one piece is handed out whatever its size") {
    const std::string big = "data: " + std::string(100, 'x') + "\n\n";
    framed f = feed_pieces({big + "data: y"}, 16);
    CHECK(f.ok);
    CHECK(f.events == std::vector<std::string>{big});
    CHECK(f.pending == "data: y");
  }
  SECTION("events completed before the overflow in the same piece are handed out") {
    framed f = feed_pieces({"data: a\n\ndata: " + std::string(20, 'x')}, 16);
    CHECK_FALSE(f.ok);
    CHECK(f.events == std::vector<std::string>{"data: a\n\n"});
  }
}

TEST_CASE("many events in one piece, each blank-line style", "[sse_framer]") {
  std::string input;
  std::vector<std::string> expected;
  for (int i = 0; i < 100; ++i) {
    std::string e = "data: {\"n\":" + std::to_string(i) + "}" + (i % 2 ? "\r\n\r\n" : "\n\n");
    expected.push_back(e);
    input += e;
  }
  CHECK(feed_pieces({input}).events == expected);
  std::vector<std::size_t> cuts;
  for (std::size_t i = 7; i < input.size(); i += 7) cuts.push_back(i);
  framed f = feed_at(input, cuts);
  CHECK(f.events == expected);
  CHECK(f.pending.empty());
}
