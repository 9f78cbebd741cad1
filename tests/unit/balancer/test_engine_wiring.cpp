// The balancer with load read from the engines: what engine_report() changes in the choices of
// every policy, with an injected clock (no sleeps).
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "balancer/balancer.hpp"

using glm::balancer::backend_address;
using glm::balancer::balancer;
using glm::balancer::engine_sample;
using glm::balancer::request_lease;
using glm::balancer::role;
using glm::balancer::route_policy;
using glm::balancer::route_request;
using namespace std::chrono_literals;

namespace {

using time_point = std::chrono::steady_clock::time_point;

backend_address addr(const std::string& text) {
  auto parsed = backend_address::parse(text);
  if (!parsed) FAIL("test address does not parse: " << text);
  return *parsed;
}

std::vector<backend_address> numbered(const char* prefix, int n) {
  std::vector<backend_address> out;
  for (int i = 1; i <= n; ++i) out.push_back(addr(std::string(prefix) + ":" + std::to_string(i)));
  return out;
}

struct fake_clock {
  time_point now = time_point{} + 1000h;
  balancer::clock fn() {
    return [this] { return now; };
  }
};

balancer::options scraping(std::chrono::milliseconds interval = 100ms, double kv_high = 0.95) {
  balancer::options o;
  o.engine.interval = interval;
  o.engine.kv_high = kv_high;
  return o;
}

engine_sample report(std::uint64_t running, std::uint64_t waiting, double kv, time_point taken) {
  engine_sample s;
  s.running = running;
  s.waiting = waiting;
  s.kv_usage = kv;
  s.taken = taken;
  return s;
}

std::uint64_t id_of(const balancer& b, role kind, const std::string& text) {
  for (const auto& t : b.scrape_targets()) {
    if (t.kind == kind && t.address == addr(text)) return t.id;
  }
  FAIL("no scrape target " << text);
  return 0;
}

// `n` sequential requests (each released before the next), counted by the instance chosen.
std::map<std::string, int> spread(balancer& b, role kind, int n) {
  std::map<std::string, int> out;
  for (int k = 0; k < n; ++k) {
    auto lease = b.begin_request(1000);
    auto chosen = kind == role::prefill ? lease.choose_prefiller() : lease.choose_decoder();
    REQUIRE(chosen);
    ++out[chosen->to_string()];
  }
  return out;
}

}  // namespace

TEST_CASE("an engine reporting a queue steers least_loaded away while its report is fresh",
          "[engine_wiring]") {
  fake_clock clock;
  balancer b(numbered("p", 2), numbered("d", 1), scraping(), clock.fn());
  b.engine_report(id_of(b, role::prefill, "p:1"), report(0, 50, 0.1, clock.now));
  b.engine_report(id_of(b, role::prefill, "p:2"), report(0, 0, 0.1, clock.now));

  auto busy = spread(b, role::prefill, 20);
  CHECK(busy["p:2"] == 20);
  CHECK(busy["p:1"] == 0);

  // Three intervals later the sample is still used; past that, it is ignored and ties share again.
  clock.now += 300ms;
  CHECK(spread(b, role::prefill, 4)["p:2"] == 4);
  clock.now += 1ms;
  auto even = spread(b, role::prefill, 20);
  CHECK(even["p:1"] == 10);
  CHECK(even["p:2"] == 10);
}

TEST_CASE("the report adds only what the proxy does not already count", "[engine_wiring]") {
  fake_clock clock;
  balancer b(numbered("p", 1), numbered("d", 2), scraping(), clock.fn());
  // d:1 holds two of our requests and its engine reports exactly those two: nothing is unseen.
  // d:2 holds one and reports three: two unseen requests, each weighed like the one placed.
  auto a = b.begin_request(100);
  auto c = b.begin_request(100);
  auto e = b.begin_request(100);
  REQUIRE(a.choose_decoder() == addr("d:1"));
  REQUIRE(c.choose_decoder() == addr("d:2"));
  REQUIRE(e.choose_decoder() == addr("d:1"));
  b.engine_report(id_of(b, role::decode, "d:1"), report(2, 0, 0.1, clock.now));
  b.engine_report(id_of(b, role::decode, "d:2"), report(2, 1, 0.1, clock.now));
  // d:1: 200 (own only); d:2: 100 own + 2 x 100 unseen = 300. Without reports d:2 would win.
  auto next = b.begin_request(100);
  CHECK(next.choose_decoder() == addr("d:1"));
}

TEST_CASE("a saturated decoder gets nothing while another is below --kv-high", "[engine_wiring]") {
  fake_clock clock;
  balancer b(numbered("p", 1), numbered("d", 2), scraping(), clock.fn());
  b.engine_report(id_of(b, role::decode, "d:1"), report(0, 0, 0.97, clock.now));
  b.engine_report(id_of(b, role::decode, "d:2"), report(0, 0, 0.2, clock.now));
  // Even with d:2 loaded by our own requests, d:1 is vetoed.
  std::vector<request_lease> held;
  for (int k = 0; k < 10; ++k) {
    held.push_back(b.begin_request(1000));
    CHECK(held.back().choose_decoder() == addr("d:2"));
  }
  const auto snap = b.instances();
  for (const auto& s : snap) {
    if (s.kind == role::decode && s.address == addr("d:1")) {
      CHECK(s.engine_saturated);
      CHECK(s.engine_fresh);
      REQUIRE(s.engine);
      CHECK(s.engine->kv_usage == Approx(0.97));
    }
  }
}

TEST_CASE("when every instance is saturated the choice fails open", "[engine_wiring]") {
  fake_clock clock;
  balancer b(numbered("p", 1), numbered("d", 2), scraping(), clock.fn());
  b.engine_report(id_of(b, role::decode, "d:1"), report(0, 0, 0.99, clock.now));
  b.engine_report(id_of(b, role::decode, "d:2"), report(0, 0, 0.96, clock.now));
  auto got = spread(b, role::decode, 10);
  CHECK(got["d:1"] == 5);
  CHECK(got["d:2"] == 5);
}

TEST_CASE("a stale saturated report no longer vetoes", "[engine_wiring]") {
  fake_clock clock;
  balancer b(numbered("p", 1), numbered("d", 2), scraping(), clock.fn());
  b.engine_report(id_of(b, role::decode, "d:1"), report(0, 0, 0.99, clock.now));
  CHECK(spread(b, role::decode, 4)["d:2"] == 4);
  clock.now += 301ms;
  auto got = spread(b, role::decode, 4);
  CHECK(got["d:1"] == 2);
  CHECK(got["d:2"] == 2);
}

TEST_CASE("failed scrapes neither eject nor make an instance look idle", "[engine_wiring]") {
  fake_clock clock;
  balancer b(numbered("p", 2), numbered("d", 1), scraping(), clock.fn());
  const auto p1 = id_of(b, role::prefill, "p:1");
  b.engine_report(p1, report(10, 40, 0.5, clock.now));
  for (int k = 0; k < 20; ++k) b.engine_scrape_failed(p1);
  // The last good sample keeps counting while it is fresh.
  CHECK(spread(b, role::prefill, 6)["p:2"] == 6);
  for (const auto& s : b.instances()) {
    CHECK_FALSE(s.ejected);
    if (s.kind == role::prefill && s.address == addr("p:1")) {
      CHECK_FALSE(s.engine_up);
      CHECK(s.engine_failures_in_row == 20);
    }
  }
}

TEST_CASE("with scraping off, reports change nothing", "[engine_wiring]") {
  fake_clock clock;
  balancer b(numbered("p", 2), numbered("d", 2), balancer::options{}, clock.fn());
  b.engine_report(id_of(b, role::prefill, "p:1"), report(0, 500, 1.0, clock.now));
  b.engine_report(id_of(b, role::decode, "d:1"), report(0, 0, 1.0, clock.now));
  auto p = spread(b, role::prefill, 10);
  auto d = spread(b, role::decode, 10);
  CHECK(p["p:1"] == 5);
  CHECK(d["d:1"] == 5);
}

TEST_CASE("consistent_hash's bounded loads count the unseen requests", "[engine_wiring]") {
  fake_clock clock;
  auto opts = scraping();
  opts.routing.prefill_policy = route_policy::consistent_hash;
  balancer b(numbered("p", 2), numbered("d", 1), opts, clock.fn());
  route_request req;
  req.routing_key = 12345;
  // Find the key's first instance, then load it from outside: bounded loads spill the key.
  std::string first;
  {
    auto lease = b.begin_request(100);
    auto c = lease.choose_prefiller(req);
    REQUIRE(c);
    first = c->address.to_string();
  }
  b.engine_report(id_of(b, role::prefill, first), report(30, 0, 0.1, clock.now));
  auto lease = b.begin_request(100);
  auto c = lease.choose_prefiller(req);
  REQUIRE(c);
  CHECK(c->address.to_string() != first);
  CHECK(c->reason == glm::balancer::route_reason::hash_spill);
}

TEST_CASE("scrape targets skip removed instances and reports of gone ones are ignored",
          "[engine_wiring]") {
  fake_clock clock;
  balancer b(numbered("p", 2), numbered("d", 1), scraping(), clock.fn());
  const auto p1 = id_of(b, role::prefill, "p:1");
  auto lease = b.begin_request(100);
  REQUIRE(lease.choose_prefiller() == addr("p:1"));
  b.remove(role::prefill, {addr("p:1")});  // isolated while the lease holds it
  for (const auto& t : b.scrape_targets()) CHECK_FALSE(t.address == addr("p:1"));
  b.engine_report(p1, report(1, 1, 0.5, clock.now));
  lease.reset();
  b.engine_report(p1, report(1, 1, 0.5, clock.now));  // gone: no crash, nothing kept
  CHECK(b.scrape_targets().size() == 2);
}
