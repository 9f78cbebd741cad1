#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "balancer/balancer.hpp"
#include "balancer/route_selector.hpp"
#include "balancer/session_pins.hpp"

using glm::balancer::backend_address;
using glm::balancer::balancer;
using glm::balancer::request_lease;
using glm::balancer::role;
using glm::balancer::route_choice;
using glm::balancer::route_policy;
using glm::balancer::route_reason;
using glm::balancer::route_request;
using namespace std::chrono_literals;

namespace {

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

balancer::options with_policies(route_policy prefill, route_policy decode) {
  balancer::options o;
  o.routing.prefill_policy = prefill;
  o.routing.decode_policy = decode;
  return o;
}

struct fake_clock {
  std::chrono::steady_clock::time_point now{};
  balancer::clock fn() {
    return [this] { return now; };
  }
};

std::uint64_t decisions(const balancer& b, role kind, route_reason reason) {
  for (const auto& d : b.route_decisions()) {
    if (d.kind == kind && d.reason == reason) return d.count;
  }
  return 0;
}

}  // namespace

TEST_CASE("policies parse from their names and nothing else", "[routing]") {
  for (auto p : {route_policy::least_loaded, route_policy::round_robin,
                 route_policy::consistent_hash, route_policy::cache_aware}) {
    CHECK(glm::balancer::parse_route_policy(to_string(p)) == p);
  }
  CHECK_FALSE(glm::balancer::parse_route_policy("random"));
  CHECK_FALSE(glm::balancer::parse_route_policy("Cache_Aware"));
  CHECK_FALSE(glm::balancer::parse_route_policy(""));
  CHECK(to_string(route_reason::load_imbalance) == "load_imbalance");
}

TEST_CASE("validation names the flag that is out of range", "[routing]") {
  glm::balancer::route_options o;
  CHECK_FALSE(validate(o));
  auto bad = [&](auto mutate) {
    auto copy = o;
    mutate(copy);
    auto message = validate(copy);
    REQUIRE(message);
    return *message;
  };
  CHECK_THAT(bad([](auto& x) { x.cache_threshold = 1.5; }),
             Catch::StartsWith("--cache-threshold: ") && Catch::Contains("out of range"));
  CHECK_THAT(bad([](auto& x) { x.cache_threshold = std::nan(""); }),
             Catch::StartsWith("--cache-threshold: "));
  CHECK_THAT(bad([](auto& x) { x.cache_balance_abs_threshold = -1; }),
             Catch::StartsWith("--cache-balance-abs-threshold: "));
  CHECK_THAT(bad([](auto& x) { x.cache_balance_rel_threshold = 0.5; }),
             Catch::StartsWith("--cache-balance-rel-threshold: "));
  CHECK_THAT(bad([](auto& x) { x.cache_max_entries = 0; }),
             Catch::StartsWith("--cache-max-entries: "));
  CHECK_THAT(bad([](auto& x) { x.hash_balance_factor = std::numeric_limits<double>::infinity(); }),
             Catch::StartsWith("--hash-balance-factor: "));
}

TEST_CASE("200 sequential requests over 4 + 4 instances: exactly 50 each, every policy",
          "[routing]") {
  // consistent_hash keeps a key on its instance by design; without a key it routes by load.
  auto policy = GENERATE(route_policy::least_loaded, route_policy::round_robin,
                         route_policy::cache_aware, route_policy::consistent_hash);
  INFO(to_string(policy));
  balancer b(numbered("p", 4), numbered("d", 4), with_policies(policy, policy));
  std::map<std::string, int> count;
  for (int i = 0; i < 200; ++i) {
    auto lease = b.begin_request(1000 + static_cast<std::size_t>(i));
    auto p = lease.choose_prefiller(route_request{});
    REQUIRE(p);
    lease.release_prefill();
    auto d = lease.choose_decoder(route_request{});
    REQUIRE(d);
    ++count[p->address.to_string()];
    ++count[d->address.to_string()];
  }
  REQUIRE(count.size() == 8);
  for (const auto& [name, n] : count) {
    INFO(name);
    CHECK(n == 50);
  }
  for (const auto& s : b.instances()) CHECK(s.picks == 50);
}

TEST_CASE("least_loaded says whether the load or the tie decided", "[routing]") {
  balancer b(numbered("p", 2), numbered("d", 1));
  auto first = b.begin_request(1000);
  auto c1 = first.choose_prefiller(route_request{});
  REQUIRE(c1);
  CHECK(c1->reason == route_reason::tie_lru);  // both idle
  auto second = b.begin_request(1000);
  auto c2 = second.choose_prefiller(route_request{});
  REQUIRE(c2);
  CHECK(c2->reason == route_reason::least_loaded);
  CHECK(c2->address != c1->address);
  auto d = second.choose_decoder(route_request{});
  REQUIRE(d);
  CHECK(d->reason == route_reason::only_one);
  CHECK(decisions(b, role::prefill, route_reason::tie_lru) == 1);
  CHECK(decisions(b, role::prefill, route_reason::least_loaded) == 1);
  CHECK(decisions(b, role::decode, route_reason::only_one) == 1);
  // Every reason of each role's policy is listed, zeros included.
  CHECK(b.route_decisions().size() == 2 * glm::balancer::route_reason_count);
}

TEST_CASE("the least recently picked wins ties, also after instances come and go", "[routing]") {
  fake_clock clock;
  balancer b(numbered("p", 3), numbered("d", 1), {}, clock.fn());
  auto pick = [&] {
    auto lease = b.begin_request(10);
    return lease.choose_prefiller()->to_string();
  };
  CHECK(pick() == "p:1");
  CHECK(pick() == "p:2");
  CHECK(pick() == "p:3");
  REQUIRE(b.add_pending(role::prefill, {addr("p:4")}).size() == 1);
  auto probes = b.due_probes();
  REQUIRE(probes.size() == 1);
  b.probe_result(probes[0].pending_id, true);
  CHECK(pick() == "p:4");  // never picked: the least recently of all
  CHECK(pick() == "p:1");
  b.remove(role::prefill, {addr("p:2")});
  CHECK(pick() == "p:3");
  CHECK(pick() == "p:4");
}

TEST_CASE("round_robin ignores load", "[routing]") {
  balancer b(numbered("p", 3), numbered("d", 1),
             with_policies(route_policy::round_robin, route_policy::least_loaded));
  std::vector<request_lease> held;
  std::vector<std::string> order;
  for (int i = 0; i < 6; ++i) {
    held.push_back(b.begin_request(i == 0 ? 1'000'000 : 10));  // the first is huge
    auto c = held.back().choose_prefiller(route_request{});
    REQUIRE(c);
    CHECK(c->reason == route_reason::round_robin);
    order.push_back(c->address.to_string());
  }
  CHECK(order == std::vector<std::string>{"p:1", "p:2", "p:3", "p:1", "p:2", "p:3"});
}

TEST_CASE("consistent_hash keeps a key on one instance and spills with bounded loads",
          "[routing]") {
  fake_clock clock;
  auto opts = with_policies(route_policy::consistent_hash, route_policy::consistent_hash);
  opts.eject_after = 1;
  balancer b(numbered("p", 4), numbered("d", 2), opts, clock.fn());
  auto choose = [&](request_lease& lease, std::uint64_t key) {
    route_request r;
    r.routing_key = key;
    auto c = lease.choose_prefiller(r);
    REQUIRE(c);
    return *c;
  };

  // Sequential: every key sticks to its first instance, and keys spread over all four.
  std::map<std::uint64_t, std::string> home;
  std::map<std::string, int> spread;
  for (std::uint64_t key = 1; key <= 400; ++key) {
    for (int turn = 0; turn < 2; ++turn) {
      auto lease = b.begin_request(100);
      auto c = choose(lease, key * 0x9e3779b97f4a7c15ULL);
      CHECK(c.reason == route_reason::hash);
      if (turn == 0) {
        home[key] = c.address.to_string();
        ++spread[home[key]];
      } else {
        CHECK(c.address.to_string() == home[key]);
      }
    }
  }
  REQUIRE(spread.size() == 4);
  for (const auto& [name, n] : spread) CHECK(n > 50);  // 100 expected each

  SECTION("an overloaded home spills the key, others stay") {
    const std::uint64_t key = 7 * 0x9e3779b97f4a7c15ULL;
    std::vector<request_lease> held;
    // Concurrent requests of one key: bounded at ceil(1.25 * mean) each.
    std::map<std::string, int> where;
    int spills = 0;
    for (int i = 0; i < 16; ++i) {
      held.push_back(b.begin_request(100));
      auto c = choose(held.back(), key);
      ++where[c.address.to_string()];
      if (c.reason == route_reason::hash_spill) ++spills;
    }
    CHECK(where[home[7]] <= 5);  // ceil(1.25 * 16 / 4)
    CHECK(spills == 16 - where[home[7]]);
    for (const auto& s : b.instances()) {
      if (s.kind == role::prefill) CHECK(s.inflight <= 5);
    }
  }

  SECTION("an ejected home spills its keys only, and they come back with it") {
    const std::string victim = home[1];
    {
      auto lease = b.begin_request(100);
      auto c = choose(lease, 1 * 0x9e3779b97f4a7c15ULL);
      REQUIRE(c.address.to_string() == victim);
      lease.prefill_failed();  // eject_after = 1
    }
    int moved = 0;
    for (std::uint64_t key = 1; key <= 400; ++key) {
      auto lease = b.begin_request(100);
      auto c = choose(lease, key * 0x9e3779b97f4a7c15ULL);
      CHECK(c.address.to_string() != victim);
      if (home[key] == victim) {
        ++moved;
        CHECK(c.reason == route_reason::hash_spill);
      } else {
        CHECK(c.address.to_string() == home[key]);  // nobody else's keys move
        CHECK(c.reason == route_reason::hash);
      }
    }
    CHECK(moved == spread[victim]);
    clock.now += 10s;
    auto probes = b.due_probes();
    REQUIRE(probes.size() == 1);
    b.probe_result(probes[0].pending_id, true);
    for (std::uint64_t key = 1; key <= 400; ++key) {
      auto lease = b.begin_request(100);
      CHECK(choose(lease, key * 0x9e3779b97f4a7c15ULL).address.to_string() == home[key]);
    }
  }
}

TEST_CASE("a recompute goes back to its prefiller while it can be chosen", "[routing]") {
  auto policy = GENERATE(route_policy::least_loaded, route_policy::round_robin,
                         route_policy::consistent_hash, route_policy::cache_aware);
  INFO(to_string(policy));
  balancer b(numbered("p", 3), numbered("d", 1), with_policies(policy, route_policy::least_loaded));
  std::vector<request_lease> others;
  auto lease = b.begin_request(100);
  route_request r;
  r.routing_key = 42;
  auto first = lease.choose_prefiller(r);
  REQUIRE(first);
  lease.release_prefill();  // on the first decode byte
  // Load elsewhere would pull a fresh choice away; the recompute still goes back.
  for (int i = 0; i < 2; ++i) {
    others.push_back(b.begin_request(100));
    REQUIRE(others.back().choose_prefiller(route_request{}));
  }
  r.recompute = true;
  auto again = lease.choose_prefiller(r);
  REQUIRE(again);
  CHECK(again->address == first->address);
  CHECK(again->reason == route_reason::recompute);

  SECTION("not when it failed: a recompute then goes elsewhere") {
    lease.prefill_failed(false);
    auto third = lease.choose_prefiller(r);
    REQUIRE(third);
    CHECK(third->address != first->address);
    CHECK(third->reason != route_reason::recompute);
  }
}

TEST_CASE("route_selector's overload gate needs both thresholds", "[routing]") {
  glm::balancer::route_options o;  // abs 2, rel 1.5
  glm::balancer::route_candidate c;
  c.inflight = 3;
  CHECK(glm::balancer::route_selector::overloaded(o, c, 0));        // 3 - 0 > 2, 3 > 0
  CHECK_FALSE(glm::balancer::route_selector::overloaded(o, c, 1));  // 3 - 1 = 2
  c.inflight = 20;
  CHECK(glm::balancer::route_selector::overloaded(o, c, 13));        // 7 > 2, 20 > 19.5
  CHECK_FALSE(glm::balancer::route_selector::overloaded(o, c, 14));  // 20 < 21
}

TEST_CASE("session pins are bounded and forget the least recently used", "[routing]") {
  glm::balancer::session_pins pins;
  pins.pin("a", 1, 2);
  pins.pin("b", 2, 2);
  CHECK(pins.find("a") == 1u);  // a is now the most recent
  pins.pin("c", 3, 2);          // b goes
  CHECK(pins.size() == 2);
  CHECK_FALSE(pins.find("b"));
  CHECK(pins.find("a") == 1u);
  CHECK(pins.find("c") == 3u);
  pins.pin("a", 7, 2);  // re-pinned elsewhere
  CHECK(pins.find("a") == 7u);
}

TEST_CASE("prefill usage is summed per prefiller in every policy", "[routing]") {
  auto policy = GENERATE(route_policy::least_loaded, route_policy::cache_aware);
  balancer b(numbered("p", 1), numbered("d", 1), with_policies(policy, route_policy::least_loaded));
  for (int i = 0; i < 3; ++i) {
    auto lease = b.begin_request(100);
    REQUIRE(lease.choose_prefiller());
    lease.release_prefill();  // the answer's usage may arrive after the first byte's release
    lease.prefill_usage(100, 40);
    lease.prefill_usage(100, 40);  // one answer per choice: a repeat is not counted again
  }
  auto s = b.instances().front();
  CHECK(s.prompt_tokens == 300);
  CHECK(s.cached_tokens == 120);
  {
    auto lease = b.begin_request(100);
    REQUIRE(lease.choose_prefiller());
    lease.prefill_usage(10, 50);  // cached is at most the prompt
  }
  {
    auto lease = b.begin_request(100);
    lease.prefill_usage(10, 5);  // nothing chosen: nothing to count
  }
  auto t = b.instances().front();
  CHECK(t.prompt_tokens == 310);
  CHECK(t.cached_tokens == 130);
}
