#include <catch2/catch.hpp>

#include <string>

#include "protocol/prefix_blocks.hpp"
#include "protocol/prefix_hasher.hpp"
#include "protocol/request_splicer.hpp"

using glm::protocol::client_request;
using glm::protocol::prefix_blocks;
using glm::protocol::prefix_digest;
using glm::protocol::prefix_hasher;
using glm::protocol::request_splicer;
using glm::protocol::route_headers;

namespace {

struct parsed {
  std::string body;
  client_request req;
  explicit parsed(std::string b) : body(std::move(b)) {
    auto err = request_splicer::parse(body, req);
    if (err) FAIL(*err);
  }
  prefix_digest digest(route_headers h = {}) const { return prefix_hasher::digest(req, h); }
};

// `n` bytes of lowercase words, different for every `c`: text, not a short repeating pattern.
std::string filler(char c, std::size_t n) {
  std::string s;
  std::uint64_t x = 0x9e3779b97f4a7c15ULL * static_cast<unsigned char>(c) | 1;
  while (s.size() < n) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    for (int k = 0; k < 1 + static_cast<int>(x % 7); ++k)
      s += static_cast<char>('a' + (x >> (8 * k)) % 26);
    s += ' ';
  }
  s.resize(n);
  return s;
}

std::string chat(const std::string& system, const std::string& user1, const std::string& more = "",
                 const std::string& extra = "") {
  return R"({"model":"glm",)" + extra + R"("messages":[{"role":"system","content":")" + system +
         R"("},{"role":"user","content":")" + user1 + "\"}" + more + "]}";
}

}  // namespace

TEST_CASE("the block schedule: 256-byte blocks, then 16 per doubling", "[prefix_hasher]") {
  CHECK(prefix_blocks::end(0) == 256);
  CHECK(prefix_blocks::end(255) == 64 * 1024);
  CHECK(prefix_blocks::end(256) == 64 * 1024 + 4096);
  CHECK(prefix_blocks::end(271) == 128 * 1024);
  CHECK(prefix_blocks::end(272) == 128 * 1024 + 8192);
  CHECK(prefix_blocks::count(0) == 0);
  CHECK(prefix_blocks::count(255) == 0);
  CHECK(prefix_blocks::count(256) == 1);
  CHECK(prefix_blocks::count(1 << 20) == 320);
  for (std::size_t i = 0; i < 400; ++i) {
    INFO(i);
    CHECK(prefix_blocks::count(prefix_blocks::end(i)) == i + 1);
    CHECK(prefix_blocks::count(prefix_blocks::end(i) - 1) == i);
  }
}

TEST_CASE("a growing conversation repeats the hashes of its shared blocks", "[prefix_hasher]") {
  const std::string sys = filler('a', 700);
  parsed t1(chat(sys, filler('k', 900)));
  parsed t2(chat(sys, filler('k', 900),
                 R"(,{"role":"assistant","content":"ok"},{"role":"user","content":")" +
                     filler('m', 2000) + "\"}"));
  auto d1 = t1.digest();
  auto d2 = t2.digest();
  CHECK(d1.prompt_bytes == t1.req.find("messages")->end - t1.req.find("messages")->value_begin);
  REQUIRE(d1.blocks.size() == d1.prompt_bytes / 256);
  REQUIRE(d2.blocks.size() > d1.blocks.size());
  for (std::size_t i = 0; i < d1.blocks.size(); ++i) CHECK(d1.blocks[i] == d2.blocks[i]);
  // The anchor covers through the first user message: the same on every turn.
  CHECK(d1.anchor == d2.anchor);
  CHECK(d1.anchor_bytes == d2.anchor_bytes);
  CHECK(d1.anchor_bytes > 700);

  SECTION("another conversation with the same system prompt shares blocks, not the anchor") {
    parsed other(chat(sys, filler('z', 900)));
    auto d3 = other.digest();
    CHECK(d3.blocks[0] == d1.blocks[0]);
    CHECK(d3.blocks.back() != d1.blocks.back());
    CHECK(d3.anchor != d1.anchor);
  }
  SECTION("what changes the rendered prefix changes every block") {
    parsed tools(chat(sys, filler('k', 900), "", R"("tools":[{"type":"function"}],)"));
    auto d4 = tools.digest();
    CHECK(d4.blocks[0] != d1.blocks[0]);
    parsed model(R"({"model":"other",)" + chat(sys, filler('k', 900)).substr(15));
    CHECK(model.digest().blocks[0] != d1.blocks[0]);
  }
  SECTION("stream and sampling options do not") {
    parsed same(chat(sys, filler('k', 900), "", R"("stream":true,"temperature":0.5,)"));
    auto d5 = same.digest();
    CHECK(d5.blocks == d1.blocks);
    CHECK(d5.anchor == d1.anchor);
  }
}

TEST_CASE("prompts of text, token ids and lists of strings all route", "[prefix_hasher]") {
  for (std::string prompt : {"\"" + filler('a', 3000) + "\"", std::string("[1,2,3,4,5]"),
                             "[\"" + filler('b', 600) + "\",\"" + filler('c', 600) + "\"]"}) {
    INFO(prompt.substr(0, 20));
    parsed p(R"({"model":"glm","prompt":)" + prompt + "}");
    auto d = p.digest();
    CHECK(d.prompt_bytes == prompt.size());
    CHECK(d.blocks.size() == prompt.size() / 256);
    CHECK(d.routing_key != 0);
    CHECK(d.anchor != 0);
    CHECK(d.anchor_bytes <= prompt.size());
  }
}

TEST_CASE("a plain prompt's anchor is a content boundary stable across turns", "[prefix_hasher]") {
  const std::string start = filler('q', 5000);
  parsed t1(R"({"prompt":")" + start + R"("})");
  parsed t2(R"({"prompt":")" + start + filler('r', 3000) + R"("})");
  auto d1 = t1.digest();
  auto d2 = t2.digest();
  CHECK(d1.anchor == d2.anchor);
  CHECK(d1.anchor_bytes >= 512);
  CHECK(d1.anchor_bytes < 5000);
  parsed other(R"({"prompt":")" + filler('x', 5000) + R"("})");
  CHECK(other.digest().anchor != d1.anchor);
}

TEST_CASE("the routing key: session, then user header, then body user, then prompt",
          "[prefix_hasher]") {
  parsed a(R"({"prompt":"hello there","user":"alice"})");
  parsed b(R"({"prompt":"something else","user":"alice"})");
  parsed c(R"({"prompt":"hello there","user":"bob"})");
  parsed n(R"({"prompt":"hello there"})");
  parsed m(R"({"prompt":"hello there","user":7})");
  CHECK(a.digest().routing_key == b.digest().routing_key);
  CHECK(a.digest().routing_key != c.digest().routing_key);
  CHECK(n.digest().routing_key == m.digest().routing_key);  // a "user" that is no string
  CHECK(n.digest().routing_key != a.digest().routing_key);
  CHECK(a.digest({"s1", "u1"}).routing_key == c.digest({"s1", "u9"}).routing_key);
  CHECK(a.digest({"", "u1"}).routing_key == c.digest({"", "u1"}).routing_key);
  CHECK(a.digest({"s1", ""}).routing_key != a.digest({"", "s1"}).routing_key);
  CHECK(prefix_hasher::routing_key(a.req, {}) == a.digest().routing_key);
}

TEST_CASE("a prompt of 1 MiB has a bounded number of blocks", "[prefix_hasher]") {
  parsed big(R"({"prompt":")" + filler('a', 1 << 20) + R"("})");
  auto d = big.digest();
  CHECK(d.blocks.size() == prefix_blocks::count((1 << 20) + 2));
  CHECK(d.blocks.size() <= 320);
}

TEST_CASE("messages with no user message still anchor", "[prefix_hasher]") {
  parsed p(R"({"messages":[{"role":"system","content":"x"},{"content":"y","role":"tool"}]})");
  auto d = p.digest();
  CHECK(d.anchor != 0);
  CHECK(d.anchor_bytes == d.prompt_bytes);
  // "role" after "content", and escaped quotes inside strings, are read right.
  parsed q(R"({"messages":[{"content":"say \"role\":\"user\"","role":"assistant"},)"
           R"({"content":"hi","role":"user"},{"role":"user","content":"later"}]})");
  auto dq = q.digest();
  const std::string_view bytes = prefix_hasher::prompt_bytes(q.req);
  CHECK(bytes.substr(0, dq.anchor_bytes).ends_with(R"("role":"user"})"));
  CHECK(bytes.substr(dq.anchor_bytes).starts_with(R"(,{"role":"user","content":"later"})"));
}
