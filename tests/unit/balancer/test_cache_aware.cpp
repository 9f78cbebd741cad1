#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "balancer/balancer.hpp"
#include "protocol/prefix_hasher.hpp"
#include "protocol/request_splicer.hpp"

using glm::balancer::backend_address;
using glm::balancer::balancer;
using glm::balancer::request_lease;
using glm::balancer::role;
using glm::balancer::route_choice;
using glm::balancer::route_policy;
using glm::balancer::route_reason;
using glm::protocol::prefix_digest;
using glm::protocol::prefix_hasher;
using namespace std::chrono_literals;

namespace {

backend_address addr(const std::string& text) {
  return *backend_address::parse(text);
}

std::vector<backend_address> numbered(const char* prefix, int n) {
  std::vector<backend_address> out;
  for (int i = 1; i <= n; ++i) out.push_back(addr(std::string(prefix) + ":" + std::to_string(i)));
  return out;
}

std::string text(const std::string& seed, std::size_t bytes) {
  std::string out;
  std::uint64_t x = std::hash<std::string>{}(seed) | 1;
  while (out.size() < bytes) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out += "word" + std::to_string(x % 1000) + " ";
  }
  out.resize(bytes);
  return out;
}

// Turn `turns` (1-based) of conversation `c`: a system prompt shared by `group`, then user
// messages of about 1 KiB and short answers, resent whole every turn as chat clients do.
std::string chat_body(int c, int turns, const std::string& group = "g", std::size_t sys = 400) {
  std::string body = R"({"model":"glm","messages":[{"role":"system","content":")" +
                     text("system " + group, sys) + "\"}";
  for (int t = 1; t <= turns; ++t) {
    body += R"(,{"role":"user","content":")" +
            text("c" + std::to_string(c) + "t" + std::to_string(t), 1024) + "\"}";
    if (t < turns) {
      body += R"(,{"role":"assistant","content":")" +
              text("a" + std::to_string(c) + "t" + std::to_string(t), 64) + "\"}";
    }
  }
  body += R"(],"stream":true})";
  return body;
}

struct digest_of {
  std::string body;
  glm::protocol::client_request req;
  prefix_digest d;
  explicit digest_of(std::string b, std::string_view session = {}) : body(std::move(b)) {
    auto err = glm::protocol::request_splicer::parse(body, req);
    if (err) FAIL(*err);
    prefix_hasher::digest(req, {session, {}}, d);
  }
};

balancer::options cache_aware() {
  balancer::options o;
  o.routing.prefill_policy = route_policy::cache_aware;
  o.eject_after = 1;
  return o;
}

struct fake_clock {
  std::chrono::steady_clock::time_point now{};
  balancer::clock fn() {
    return [this] { return now; };
  }
};

// One request's prefill: choose, and (when `cached` is given) report the usage a prefiller with
// that cache would report. prompt_tokens are bytes / 4.
route_choice prefill(balancer& b, const digest_of& d, std::optional<std::size_t> cached_bytes,
                     std::string_view session = {}) {
  auto lease = b.begin_request(d.body.size());
  auto c = lease.choose_prefiller(glm::balancer::to_route_request(d.d, session));
  REQUIRE(c);
  if (cached_bytes) {
    lease.prefill_usage(static_cast<std::int64_t>(d.d.prompt_bytes / 4),
                        static_cast<std::int64_t>(*cached_bytes / 4));
  }
  return *c;
}

glm::balancer::instance_snapshot snap(const balancer& b, const backend_address& a) {
  for (const auto& s : b.instances()) {
    if (s.kind == role::prefill && s.address == a) return s;
  }
  FAIL("no instance " << a.to_string());
  return {};
}

}  // namespace

TEST_CASE("a conversation stays on the prefiller that has its prefix", "[cache_aware]") {
  balancer b(numbered("p", 4), numbered("d", 1), cache_aware());
  std::map<int, backend_address> home;
  for (int c = 0; c < 8; ++c) {
    auto first = prefill(b, digest_of(chat_body(c, 1)), 0);
    CHECK(first.reason == route_reason::prefix_new);
    // At most the system prompt all conversations share: this conversation is new.
    CHECK(first.predicted_bytes < 700);
    home[c] = first.address;
  }
  for (int turn = 2; turn <= 6; ++turn) {
    for (int c = 0; c < 8; ++c) {
      digest_of d(chat_body(c, turn));
      auto choice = prefill(b, d, std::nullopt);
      CHECK(choice.address == home[c]);
      CHECK(choice.reason == route_reason::prefix_hit);
      CHECK(choice.predicted_bytes > 0);
      CHECK(choice.predicted_bytes <= d.d.prompt_bytes);
      // Learned from the turn-1 answers, which reported bytes / 4 tokens.
      CHECK(choice.predicted_tokens == Approx(choice.predicted_bytes / 4.0).margin(2));
    }
  }
  std::size_t entries = 0;
  for (const auto& s : b.instances()) entries += s.prefix_entries;
  CHECK(entries > 0);
}

TEST_CASE("conversations sharing a system prompt spread instead of herding", "[cache_aware]") {
  // A system prompt of 6 KiB and first messages of 1 KiB: the shared part alone is over the
  // threshold of every new conversation's prompt.
  balancer b(numbered("p", 4), numbered("d", 1), cache_aware());
  std::map<std::string, int> count;
  for (int c = 0; c < 200; ++c) {
    auto choice = prefill(b, digest_of(chat_body(c, 1, "all", 6000)), 6000);
    CHECK(choice.reason == route_reason::prefix_new);
    ++count[choice.address.to_string()];
  }
  REQUIRE(count.size() == 4);
  for (const auto& [name, n] : count) {
    INFO(name);
    CHECK(n >= 35);  // 50 expected
  }
}

TEST_CASE("two replicas that each see every other turn place a conversation alike",
          "[cache_aware]") {
  balancer one(numbered("p", 4), numbered("d", 1), cache_aware());
  balancer two(numbered("p", 4), numbered("d", 1), cache_aware());
  std::set<std::string> used;
  for (int c = 0; c < 24; ++c) {
    std::set<std::string> where;
    for (int turn = 1; turn <= 6; ++turn) {
      balancer& replica = turn % 2 == 1 ? one : two;
      auto choice = prefill(replica, digest_of(chat_body(c, turn, "g" + std::to_string(c % 3))),
                            std::nullopt);
      where.insert(choice.address.to_string());
    }
    INFO("conversation " << c);
    CHECK(where.size() == 1);
    used.insert(*where.begin());
  }
  CHECK(used.size() == 4);
}

TEST_CASE("32 conversations at once sharing an 8 KiB prefix spread evenly", "[cache_aware]") {
  balancer b(numbered("p", 4), numbered("d", 1), cache_aware());
  // The shared prefix is cached on one prefiller already.
  const auto home = prefill(b, digest_of(chat_body(0, 1, "x", 8192)), 0).address;
  std::vector<request_lease> held;
  for (int c = 1; c <= 32; ++c) {
    digest_of d(chat_body(c, 1, "x", 8192));
    held.push_back(b.begin_request(d.body.size()));
    auto choice = held.back().choose_prefiller(glm::balancer::to_route_request(d.d));
    REQUIRE(choice);
    // Its match on `home` covers most of its prompt, but stops before its own first message.
    CHECK(choice->reason == route_reason::prefix_new);
  }
  int lo = 1000, hi = 0;
  for (const auto& s : b.instances()) {
    if (s.kind != role::prefill) continue;
    lo = std::min(lo, static_cast<int>(s.inflight));
    hi = std::max(hi, static_cast<int>(s.inflight));
  }
  CHECK(lo >= 6);
  CHECK(static_cast<double>(hi) / lo <= 1.5);
  CHECK(snap(b, home).inflight <= static_cast<std::uint64_t>(hi));
}

TEST_CASE("an overloaded prefix home yields to load", "[cache_aware]") {
  balancer b(numbered("p", 4), numbered("d", 1), cache_aware());
  // The very same prompt, 32 at once: a full match on home, then on every instance it spilled to.
  digest_of d(chat_body(0, 1, "x", 8192));
  const auto home = prefill(b, d, 0).address;
  std::vector<request_lease> held;
  std::map<route_reason, int> reasons;
  for (int c = 0; c < 32; ++c) {
    held.push_back(b.begin_request(d.body.size()));
    auto choice = held.back().choose_prefiller(glm::balancer::to_route_request(d.d));
    REQUIRE(choice);
    ++reasons[choice->reason];
    // The per-candidate gate: nobody is ever more than abs (2) above the mean, counting the new
    // request's charge, unless it is also within rel (1.5) of it.
    double mean = 0;
    std::uint64_t hi = 0;
    for (const auto& s : b.instances()) {
      if (s.kind != role::prefill) continue;
      mean += static_cast<double>(s.inflight) / 4;
      hi = std::max(hi, s.inflight);
    }
    CHECK((static_cast<double>(hi) <= mean + 3 || static_cast<double>(hi) <= 1.5 * mean + 1));
  }
  CHECK(reasons[route_reason::prefix_hit] > 0);
  CHECK(reasons[route_reason::load_imbalance] > 0);
  CHECK(snap(b, home).inflight < 32);
}

TEST_CASE("answers confirm predictions and withdraw what they contradict", "[cache_aware]") {
  balancer b(numbered("p", 2), numbered("d", 1), cache_aware());
  digest_of t1(chat_body(1, 1));
  const auto home = prefill(b, t1, std::nullopt).address;

  SECTION("a miss on unconfirmed entries under concurrency is no misprediction") {
    // Turn 2 arrives while turn 1's prefill still runs: it follows turn 1, and the answer shows
    // nothing cached (turn 1 had not finished filling it).
    digest_of t2(chat_body(1, 2));
    auto c2 = prefill(b, t2, 0);
    CHECK(c2.address == home);
    CHECK(c2.reason == route_reason::prefix_hit);
    CHECK(snap(b, home).mispredictions == 0);
    auto c3 = prefill(b, digest_of(chat_body(1, 3)), t2.d.prompt_bytes);
    CHECK(c3.address == home);
    CHECK(snap(b, home).mispredictions == 0);
  }

  SECTION("a confirmed entry contradicted by the cache is counted and withdrawn") {
    digest_of t2(chat_body(1, 2));
    prefill(b, t2, t1.d.prompt_bytes);  // confirms turn 2's blocks
    // Another conversation touched later stays.
    digest_of other(chat_body(2, 1));
    auto o = prefill(b, other, 0);
    // The prefiller evicted this conversation: turn 3 finds nothing cached.
    digest_of t3(chat_body(1, 3));
    auto c3 = prefill(b, t3, 0);
    CHECK(c3.address == home);
    CHECK(snap(b, home).mispredictions == 1);
    if (o.address == home) {
      // Used after turn 2, so not contradicted: still a full-length prediction.
      auto again = b.begin_request(other.body.size());
      auto c = again.choose_prefiller(glm::balancer::to_route_request(other.d));
      REQUIRE(c);
      CHECK(c->predicted_bytes > 0);
    }
    // Turn 3 was computed by that answer: turn 4 predicts it again, confirmed, and is right.
    digest_of t4(chat_body(1, 4));
    auto c4 = prefill(b, t4, t3.d.prompt_bytes);
    CHECK(c4.address == home);
    CHECK(c4.reason == route_reason::prefix_hit);
    CHECK(snap(b, home).mispredictions == 1);
  }

  SECTION("an answer without usage leaves the index as it is") {
    const auto before = snap(b, home).prefix_entries;
    auto lease = b.begin_request(100);
    REQUIRE(lease.choose_prefiller(glm::balancer::to_route_request(t1.d)));
    lease.release_prefill();
    lease.reset();
    CHECK(snap(b, home).prefix_entries == before);
    CHECK(snap(b, home).mispredictions == 0);
  }

  SECTION("a failed prefill takes back the blocks it added") {
    const auto before = snap(b, home).prefix_entries;
    digest_of t2(chat_body(1, 2));
    auto lease = b.begin_request(t2.body.size());
    REQUIRE(lease.choose_prefiller(glm::balancer::to_route_request(t2.d))->address == home);
    CHECK(snap(b, home).prefix_entries > before);
    lease.prefill_failed(false);
    CHECK(snap(b, home).prefix_entries == before);
  }
}

TEST_CASE("a restarted prefiller is noticed within a few requests and settles again",
          "[cache_aware]") {
  balancer b(numbered("p", 2), numbered("d", 1), cache_aware());
  std::map<int, std::size_t> cached;  // what the simulated prefiller has: bytes per conversation
  std::map<int, backend_address> home;
  for (int turn = 1; turn <= 3; ++turn) {
    for (int c = 0; c < 10; ++c) {
      digest_of d(chat_body(c, turn));
      auto choice = prefill(b, d, cached[c]);
      home[c] = choice.address;
      cached[c] = d.d.prompt_bytes;
    }
  }
  const auto victim = home[0];
  const auto entries_before = snap(b, victim).prefix_entries;
  REQUIRE(entries_before > 0);
  // The victim restarts: its cache is empty.
  for (auto& [c, bytes] : cached) {
    if (home[c] == victim) bytes = 0;
  }
  std::uint64_t misses_seen = 0;
  int requests_until_clean = 0;
  for (int turn = 4; turn <= 6; ++turn) {
    for (int c = 0; c < 10; ++c) {
      digest_of d(chat_body(c, turn));
      auto choice = prefill(b, d, cached[c]);
      if (choice.address == victim && misses_seen < 3) ++requests_until_clean;
      misses_seen = snap(b, victim).mispredictions;
      CHECK(choice.address == home[c]);  // conversations do not scatter
      cached[c] = d.d.prompt_bytes;
    }
  }
  // Each contradicted answer withdraws everything used before it: two suffice here (the first
  // conversation's, then the next older one's), far fewer than one per conversation.
  const auto after = snap(b, victim).mispredictions;
  CHECK(after >= 1);
  CHECK(after <= 3);
  // Settled: a further round is all confirmed hits, no new misprediction.
  for (int c = 0; c < 10; ++c) {
    digest_of d(chat_body(c, 7));
    auto choice = prefill(b, d, cached[c]);
    CHECK(choice.reason == route_reason::prefix_hit);
    cached[c] = d.d.prompt_bytes;
  }
  CHECK(snap(b, victim).mispredictions == after);
}

TEST_CASE("bytes per token are learned from answers", "[cache_aware]") {
  balancer b(numbered("p", 2), numbered("d", 1), cache_aware());
  CHECK(b.bytes_per_token() == 4.0);
  digest_of d(chat_body(1, 1));
  for (int i = 0; i < 60; ++i) {
    auto lease = b.begin_request(100);
    REQUIRE(lease.choose_prefiller(glm::balancer::to_route_request(d.d)));
    lease.prefill_usage(static_cast<std::int64_t>(d.d.prompt_bytes / 3), 0);
  }
  CHECK(b.bytes_per_token() == Approx(3.0).epsilon(0.01));
  auto lease = b.begin_request(100);
  auto c = lease.choose_prefiller(glm::balancer::to_route_request(d.d));
  REQUIRE(c);
  CHECK(c->predicted_tokens == Approx(c->predicted_bytes / 3.0).margin(1));
  // Usage without tokens teaches nothing.
  lease.prefill_usage(0, 0);
  CHECK(b.bytes_per_token() == Approx(3.0).epsilon(0.01));
}

TEST_CASE("removal, ejection and a reset drop an instance's entries", "[cache_aware]") {
  fake_clock clock;
  balancer b(numbered("p", 3), numbered("d", 1), cache_aware(), clock.fn());
  std::map<std::string, int> per;
  for (int c = 0; c < 12; ++c) ++per[prefill(b, digest_of(chat_body(c, 1)), 0).address.to_string()];
  REQUIRE(per.size() == 3);
  auto entries = [&](const char* a) { return snap(b, addr(a)).prefix_entries; };
  REQUIRE(entries("p:1") > 0);
  REQUIRE(entries("p:2") > 0);
  REQUIRE(entries("p:3") > 0);

  b.reset_prefix_cache(role::prefill, addr("p:1"));
  CHECK(entries("p:1") == 0);
  CHECK(entries("p:2") > 0);

  {
    auto lease = b.begin_request(10);
    glm::balancer::route_request r;
    while (true) {
      auto c = lease.choose_prefiller(r);
      REQUIRE(c);
      if (c->address == addr("p:2")) break;
    }
    lease.prefill_failed();  // eject_after = 1
  }
  CHECK(snap(b, addr("p:2")).ejected);
  CHECK(entries("p:2") == 0);

  b.remove(role::prefill, {addr("p:3")});
  for (const auto& s : b.instances()) CHECK(s.address != addr("p:3"));
  b.reset_prefix_cache(role::prefill);
  CHECK(entries("p:1") == 0);
}

TEST_CASE("a session pins softly to its prefiller", "[cache_aware]") {
  fake_clock clock;
  balancer b(numbered("p", 4), numbered("d", 1), cache_aware(), clock.fn());
  // Different prompts every time: only the session header ties them together.
  auto first = prefill(b, digest_of(chat_body(100, 1)), 0, "s-1");
  for (int i = 1; i < 6; ++i) {
    auto c = prefill(b, digest_of(chat_body(100 + i, 1)), 0, "s-1");
    CHECK(c.address == first.address);
    CHECK(c.reason == route_reason::session);
  }

  SECTION("it yields when the pinned prefiller is overloaded") {
    std::vector<request_lease> held;
    for (int i = 0; i < 3; ++i) {
      held.push_back(b.begin_request(10));
      glm::balancer::route_request r;
      r.session_key = "s-1";
      REQUIRE(held.back().choose_prefiller(r)->address == first.address);
    }
    auto c = prefill(b, digest_of(chat_body(200, 1)), 0, "s-1");
    CHECK(c.address != first.address);
  }

  SECTION("it yields when the pinned prefiller is ejected") {
    auto lease = b.begin_request(10);
    glm::balancer::route_request r;
    r.session_key = "s-1";
    REQUIRE(lease.choose_prefiller(r)->address == first.address);
    lease.prefill_failed();
    auto c = prefill(b, digest_of(chat_body(300, 1)), 0, "s-1");
    CHECK(c.address != first.address);
    // It is re-pinned where it went.
    auto again = prefill(b, digest_of(chat_body(301, 1)), 0, "s-1");
    CHECK(again.address == c.address);
    CHECK(again.reason == route_reason::session);
  }
}

TEST_CASE("threads choosing, answering, failing and resetting leave every load at 0",
          "[cache_aware][threads]") {
  auto opts = cache_aware();
  opts.eject_after = 0;
  opts.routing.cache_max_entries = 64;  // eviction under way all the time
  balancer b(numbered("p", 3), numbered("d", 2), opts);
  std::vector<std::unique_ptr<digest_of>> digests;
  for (int c = 0; c < 8; ++c) {
    digests.push_back(std::make_unique<digest_of>(chat_body(c, 1 + c % 3)));
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 500; ++k) {
        const auto& d = *digests[static_cast<std::size_t>((t * 7 + k) % 8)];
        auto lease = b.begin_request(d.body.size());
        const std::string session = "s" + std::to_string(k % 5);
        if (!lease.choose_prefiller(glm::balancer::to_route_request(d.d, session))) continue;
        if (k % 7 == 0) {
          lease.prefill_failed(false);
          continue;
        }
        lease.prefill_usage(static_cast<std::int64_t>(d.d.prompt_bytes / 4),
                            static_cast<std::int64_t>((k % 3) * d.d.prompt_bytes / 8));
        lease.release_prefill();
        lease.choose_decoder(glm::balancer::route_request{});
        if (k % 50 == 0) b.reset_prefix_cache(role::prefill);
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(b.request_num() == 0);
  std::uint64_t decided = 0;
  for (const auto& d : b.route_decisions()) {
    if (d.kind == role::prefill) decided += d.count;
  }
  CHECK(decided >= 2000);
  for (const auto& s : b.instances()) {
    CHECK(s.inflight == 0);
    CHECK(s.active_kv_cache == 0.0);
    CHECK(s.active_tokens == 0.0);
    if (s.kind == role::prefill) CHECK(s.prefix_entries <= 64);
  }
}

TEST_CASE("the engine's KV capacity bounds what the index predicts", "[cache_aware]") {
  auto opts = cache_aware();
  opts.engine.interval = std::chrono::milliseconds(100);
  fake_clock clock;
  balancer b(numbered("p", 1), numbered("d", 1), opts, clock.fn());
  const auto p1 = numbered("p", 1)[0];
  // Eight conversations of about 4 KiB each (no answers: nothing confirmed, nothing withdrawn),
  // all remembered without a bound.
  for (int c = 0; c < 8; ++c) prefill(b, digest_of(chat_body(c, 4)), std::nullopt);
  const auto before = snap(b, p1).prefix_entries;
  REQUIRE(before * 256 > 8 * 4000);
  CHECK(prefill(b, digest_of(chat_body(1, 4)), std::nullopt).predicted_bytes > 2000);

  // The engine says its cache holds 1,000 tokens: 4,000 bytes at 4 bytes per token, so only the
  // most recent conversation stays predicted.
  std::uint64_t id = 0;
  for (const auto& t : b.scrape_targets()) {
    if (t.kind == role::prefill) id = t.id;
  }
  glm::balancer::engine_sample sample;
  sample.cache_tokens = 1000;
  sample.taken = clock.now;
  b.engine_report(id, sample);
  CHECK(snap(b, p1).prefix_entries * 256 <= 4000);
  CHECK(prefill(b, digest_of(chat_body(2, 4)), std::nullopt).predicted_bytes < 700);
  // A report without the capacity keeps the bound.
  sample.cache_tokens = 0;
  b.engine_report(id, sample);
  for (int c = 0; c < 8; ++c) prefill(b, digest_of(chat_body(c, 4)), std::nullopt);
  CHECK(snap(b, p1).prefix_entries * 256 <= 4000);
}
