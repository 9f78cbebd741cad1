#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "balancer/balancer.hpp"

using glm::balancer::backend_address;
using glm::balancer::balancer;
using glm::balancer::instance_snapshot;
using glm::balancer::request_lease;
using glm::balancer::role;
using namespace std::chrono_literals;

namespace {

using time_point = std::chrono::steady_clock::time_point;

backend_address addr(const char* text) {
  auto parsed = backend_address::parse(text);
  if (!parsed) FAIL("test address does not parse: " << text);
  return *parsed;
}

std::vector<backend_address> addrs(std::initializer_list<const char*> texts) {
  std::vector<backend_address> out;
  for (const char* t : texts) out.push_back(addr(t));
  return out;
}

instance_snapshot snapshot_of(const balancer& b, role kind, const char* text) {
  for (const auto& s : b.instances()) {
    if (s.kind == kind && s.address == addr(text)) return s;
  }
  FAIL("no instance " << text);
  return {};
}

// Exact zeros, not approximately: a residue would bias every later choice.
void require_idle(const balancer& b) {
  CHECK(b.request_num() == 0);
  for (const auto& s : b.instances()) {
    INFO(to_string(s.kind) << " " << s.address.to_string());
    CHECK(s.active_tokens == 0.0);
    CHECK(s.active_kv_cache == 0.0);
    CHECK(s.inflight == 0);
  }
}

}  // namespace

TEST_CASE("scores follow the reference formulas", "[balancer]") {
  CHECK(balancer::prefill_score(0) == Approx(120.0745));
  CHECK(balancer::prefill_score(4000) == Approx(1000 * 0.0345 + 120.0745));
  CHECK(balancer::prefill_score(1) == Approx(0.25 * 0.0345 + 120.0745));
  CHECK(balancer::decode_score(0) == 0.0);
  CHECK(balancer::decode_score(123457) == 123457.0);

  balancer b(addrs({"p:1"}), addrs({"d:1"}));
  auto lease = b.begin_request(4000);
  CHECK(lease.prefill_score() == balancer::prefill_score(4000));
  CHECK(lease.decode_score() == 4000.0);
  REQUIRE(lease.choose_prefiller());
  REQUIRE(lease.choose_decoder());
  CHECK(snapshot_of(b, role::prefill, "p:1").active_kv_cache == balancer::prefill_score(4000));
  CHECK(snapshot_of(b, role::prefill, "p:1").active_tokens == 0.0);
  CHECK(snapshot_of(b, role::decode, "d:1").active_tokens == 4000.0);
  CHECK(snapshot_of(b, role::decode, "d:1").active_kv_cache == 0.0);
}

TEST_CASE("concurrent requests on idle backends spread over every instance", "[balancer]") {
  balancer b(addrs({"p:1", "p:2", "p:3"}), addrs({"d:1", "d:2", "d:3", "d:4"}));
  std::vector<request_lease> leases;
  std::set<std::string> prefillers;
  std::set<std::string> decoders;
  for (int i = 0; i < 3; ++i) {
    leases.push_back(b.begin_request(1000));
    prefillers.insert(leases.back().choose_prefiller()->to_string());
    decoders.insert(leases.back().choose_decoder()->to_string());
  }
  CHECK(prefillers == std::set<std::string>{"p:1", "p:2", "p:3"});
  CHECK(decoders == std::set<std::string>{"d:1", "d:2", "d:3"});
  CHECK(b.request_num() == 3);

  leases.push_back(b.begin_request(1000));
  CHECK(leases.back().choose_decoder() == addr("d:4"));
  // Every prefiller now carries one equal score: the tie goes to the one picked longest ago.
  CHECK(leases.back().choose_prefiller() == addr("p:1"));
  for (const auto& s : b.instances()) CHECK(s.inflight == (s.address == addr("p:1") ? 2u : 1u));
  leases.clear();
  require_idle(b);
}

TEST_CASE("ties go to the least recently picked, never-picked ones in the order added",
          "[balancer]") {
  std::chrono::steady_clock::time_point now{};
  // Deliberately not in sorted order: "first" means first added, not smallest address.
  balancer b(addrs({"p:9", "p:1"}), addrs({"d:9", "d:1"}), {}, [&now] { return now; });
  {
    auto lease = b.begin_request(10);
    CHECK(lease.choose_prefiller() == addr("p:9"));
    CHECK(lease.choose_decoder() == addr("d:9"));
  }
  // Added later through /instances/add: it comes after the configured ones.
  REQUIRE(b.add_pending(role::decode, addrs({"d:5"})).size() == 1);
  auto probes = b.due_probes();
  REQUIRE(probes.size() == 1);
  b.probe_result(probes[0].pending_id, true);

  std::vector<request_lease> leases;
  for (int i = 0; i < 3; ++i) leases.push_back(b.begin_request(10));
  CHECK(leases[0].choose_decoder() == addr("d:1"));  // never picked, added before d:5
  CHECK(leases[1].choose_decoder() == addr("d:5"));  // never picked
  CHECK(leases[2].choose_decoder() == addr("d:9"));  // the only idle one
  leases.clear();
  // All idle again: d:1 was picked longest ago.
  auto again = b.begin_request(10);
  CHECK(again.choose_decoder() == addr("d:1"));
}

TEST_CASE("the least-loaded instance wins with unequal body sizes", "[balancer]") {
  balancer b(addrs({"p:1", "p:2"}), addrs({"d:1", "d:2"}));
  std::vector<request_lease> leases;
  auto next = [&](std::size_t bytes) -> request_lease& {
    leases.push_back(b.begin_request(bytes));
    return leases.back();
  };

  SECTION("decoders by active_tokens") {
    // Each comment is the load the choice saw: d:1 / d:2.
    CHECK(next(1000).choose_decoder() == addr("d:1"));  // 0 / 0: tie
    CHECK(next(10).choose_decoder() == addr("d:2"));    // 1000 / 0
    CHECK(next(970).choose_decoder() == addr("d:2"));   // 1000 / 10
    CHECK(next(19).choose_decoder() == addr("d:2"));    // 1000 / 980
    CHECK(next(1).choose_decoder() == addr("d:2"));     // 1000 / 999
    CHECK(next(1).choose_decoder() == addr("d:1"));     // 1000 / 1000: tie
    CHECK(next(1).choose_decoder() == addr("d:2"));     // 1001 / 1000
    CHECK(snapshot_of(b, role::decode, "d:1").active_tokens == 1001.0);
    CHECK(snapshot_of(b, role::decode, "d:2").active_tokens == 1001.0);
  }

  SECTION("prefillers by 0.3 * active_kv_cache") {
    const double big = balancer::prefill_score(40000);  // 465.0745
    const double small = balancer::prefill_score(0);    // 120.0745
    // Each comment is the active_kv_cache the choice saw: p:1 / p:2.
    CHECK(next(40000).choose_prefiller() == addr("p:1"));  // 0 / 0
    CHECK(next(0).choose_prefiller() == addr("p:2"));      // big / 0
    CHECK(next(0).choose_prefiller() == addr("p:2"));      // big / small
    CHECK(next(0).choose_prefiller() == addr("p:2"));      // big / 2 small
    CHECK(next(0).choose_prefiller() == addr("p:2"));      // big / 3 small = 360.2
    CHECK(next(0).choose_prefiller() == addr("p:1"));      // big / 4 small = 480.3
    CHECK(snapshot_of(b, role::prefill, "p:1").active_kv_cache == Approx(big + small));
    CHECK(snapshot_of(b, role::prefill, "p:2").active_kv_cache == Approx(4 * small));
  }
  leases.clear();
  require_idle(b);
}

TEST_CASE("releasing the prefill score on the first decode byte changes the next choice",
          "[balancer]") {
  balancer b(addrs({"p:1", "p:2"}), addrs({"d:1"}));
  auto first = b.begin_request(5000);
  CHECK(first.choose_prefiller() == addr("p:1"));
  CHECK(first.choose_decoder() == addr("d:1"));

  SECTION("without the release the second request goes elsewhere") {
    auto second = b.begin_request(5000);
    CHECK(second.choose_prefiller() == addr("p:2"));
  }
  SECTION("after it the first prefiller is idle again") {
    first.release_prefill();
    CHECK(snapshot_of(b, role::prefill, "p:1").active_kv_cache == 0.0);
    CHECK(snapshot_of(b, role::prefill, "p:1").inflight == 0);
    // The decode load stays until the request ends.
    CHECK(snapshot_of(b, role::decode, "d:1").active_tokens == 5000.0);
    CHECK(b.request_num() == 1);
    // Both idle: a tie (which p:2 wins, picked less recently), not a choice by load.
    auto second = b.begin_request(5000);
    auto choice = second.choose_prefiller(glm::balancer::route_request{});
    REQUIRE(choice);
    CHECK(choice->reason == glm::balancer::route_reason::tie_lru);
  }
}

TEST_CASE("every way a request ends gives all its load back", "[balancer]") {
  balancer b(addrs({"p:1", "p:2"}), addrs({"d:1", "d:2"}));
  // Fractional prefill scores released in another order than charged leave float residue
  // unless the balancer zeroes idle instances.
  auto charged = [&](std::size_t bytes) {
    auto lease = b.begin_request(bytes);
    REQUIRE(lease.choose_prefiller());
    REQUIRE(lease.choose_decoder());
    return lease;
  };
  auto other = charged(7);
  auto third = charged(13);

  SECTION("reset, twice") {
    auto lease = charged(1001);
    lease.reset();
    CHECK_FALSE(lease.active());
    lease.reset();
    CHECK(b.request_num() == 2);
  }
  SECTION("destructor") {
    { auto lease = charged(1001); }
    CHECK(b.request_num() == 2);
  }
  SECTION("move-assign over an active lease ends the overwritten one") {
    auto target = charged(1001);
    auto source = charged(333);
    target = std::move(source);
    CHECK_FALSE(source.active());
    CHECK(target.active());
    CHECK(target.decode_score() == 333.0);
    CHECK(b.request_num() == 3);
    source.reset();  // moved-from: releases nothing
    CHECK(b.request_num() == 3);
    target.reset();
  }
  SECTION("move-construct transfers ownership") {
    auto source = charged(1001);
    request_lease target(std::move(source));
    CHECK_FALSE(source.active());
    CHECK_FALSE(source.choose_prefiller());
    { request_lease gone(std::move(source)); }
    CHECK(b.request_num() == 3);
  }
  SECTION("release both then destroy") {
    auto lease = charged(1001);
    lease.release_prefill();
    lease.release_prefill();
    lease.release_decoder();
    lease.release_decoder();
    CHECK(b.request_num() == 3);
  }
  SECTION("a lease that never chose anything") {
    auto lease = b.begin_request(1);
    CHECK(b.request_num() == 3);
  }
  SECTION("self move-assign keeps the lease") {
    auto lease = charged(1001);
    auto& alias = lease;
    lease = std::move(alias);
    CHECK(lease.active());
    CHECK(b.request_num() == 3);
  }
  other.reset();
  third = request_lease{};
  require_idle(b);
}

TEST_CASE("releases are idempotent and never touch another lease's load", "[balancer]") {
  balancer b(addrs({"p:1"}), addrs({"d:1"}));
  auto a = b.begin_request(100);
  auto c = b.begin_request(300);
  REQUIRE(a.choose_prefiller());
  REQUIRE(a.choose_decoder());
  REQUIRE(c.choose_prefiller());
  REQUIRE(c.choose_decoder());
  for (int i = 0; i < 3; ++i) {
    a.release_prefill();
    a.release_decoder();
  }
  a.reset();
  a.reset();
  CHECK(b.request_num() == 1);
  CHECK(snapshot_of(b, role::prefill, "p:1").active_kv_cache ==
        Approx(balancer::prefill_score(300)));
  CHECK(snapshot_of(b, role::prefill, "p:1").inflight == 1);
  CHECK(snapshot_of(b, role::decode, "d:1").active_tokens == 300.0);
  CHECK(snapshot_of(b, role::decode, "d:1").inflight == 1);
  c.reset();
  require_idle(b);
}

TEST_CASE("choosing again releases the previous choice first", "[balancer]") {
  balancer b(addrs({"p:1", "p:2"}), addrs({"d:1", "d:2"}));
  auto lease = b.begin_request(800);
  std::string p, d;
  for (int attempt = 0; attempt < 3; ++attempt) {
    // Released first, the previous choice is idle again and ties rotate: only the last choice
    // may carry the charge.
    p = lease.choose_prefiller()->to_string();
    d = lease.choose_decoder()->to_string();
    CHECK(snapshot_of(b, role::prefill, p.c_str()).active_kv_cache == balancer::prefill_score(800));
    CHECK(snapshot_of(b, role::prefill, p.c_str()).inflight == 1);
    CHECK(snapshot_of(b, role::decode, d.c_str()).active_tokens == 800.0);
    CHECK(snapshot_of(b, role::decode, d.c_str()).inflight == 1);
    CHECK(snapshot_of(b, role::prefill, p == "p:1" ? "p:2" : "p:1").inflight == 0);
    CHECK(snapshot_of(b, role::decode, d == "d:1" ? "d:2" : "d:1").inflight == 0);
  }
  CHECK(b.request_num() == 1);

  // A recompute after the prefill was released on the first byte goes back to that prefiller.
  lease.release_prefill();
  glm::balancer::route_request recompute;
  recompute.recompute = true;
  CHECK(lease.choose_prefiller(recompute)->address.to_string() == p);
  CHECK(snapshot_of(b, role::prefill, p.c_str()).inflight == 1);
  lease.reset();
  require_idle(b);
}

TEST_CASE("a failed prefiller is avoided by the next choice of the same lease", "[balancer]") {
  balancer b(addrs({"p:1", "p:2", "p:3"}), addrs({"d:1"}));

  SECTION("even though it is idle again and first in the tie") {
    auto lease = b.begin_request(500);
    REQUIRE(lease.choose_prefiller() == addr("p:1"));
    lease.prefill_failed();
    CHECK(lease.choose_prefiller() == addr("p:2"));
    // The retry moved the charge: nothing is left on the failed instance.
    CHECK(snapshot_of(b, role::prefill, "p:1").inflight == 0);
    CHECK(snapshot_of(b, role::prefill, "p:1").active_kv_cache == 0.0);
    CHECK(snapshot_of(b, role::prefill, "p:2").inflight == 1);
    // Still avoided on a later choice, not only the next one (the tie goes to p:3 now).
    CHECK(lease.choose_prefiller() == addr("p:3"));
    lease.reset();
    require_idle(b);
  }

  SECTION("even though it is the least loaded") {
    // p:2 and p:3 carry bigger requests than the one under test; p:1 is idle.
    auto filler = b.begin_request(10);
    auto big3 = b.begin_request(200000);
    auto big2 = b.begin_request(100000);
    REQUIRE(filler.choose_prefiller() == addr("p:1"));
    REQUIRE(big3.choose_prefiller() == addr("p:2"));
    REQUIRE(big2.choose_prefiller() == addr("p:3"));
    filler.reset();
    REQUIRE(snapshot_of(b, role::prefill, "p:1").inflight == 0);

    auto lease = b.begin_request(10);
    REQUIRE(lease.choose_prefiller() == addr("p:1"));
    lease.prefill_failed();
    // p:1 is idle; p:3 (big2) is less loaded than p:2 (big3).
    CHECK(lease.choose_prefiller() == addr("p:3"));
    lease.reset();
    big2.reset();
    big3.reset();
    require_idle(b);
  }

  SECTION("every failed instance is avoided, then the least loaded of them is the fallback") {
    auto lease = b.begin_request(500);
    REQUIRE(lease.choose_prefiller() == addr("p:1"));
    lease.prefill_failed();
    REQUIRE(lease.choose_prefiller() == addr("p:2"));
    lease.prefill_failed();
    CHECK(lease.choose_prefiller() == addr("p:3"));
    lease.prefill_failed();
    // All three failed: choosing must still give an instance, by the ordinary rule.
    CHECK(lease.choose_prefiller() == addr("p:1"));
    auto other = b.begin_request(500);
    REQUIRE(other.choose_prefiller() == addr("p:2"));
    // p:1 released first: p:1 and p:3 idle, and p:3 was picked less recently.
    CHECK(lease.choose_prefiller() == addr("p:3"));
    other.reset();
    lease.reset();
    require_idle(b);
  }

  SECTION("other leases are not affected") {
    auto lease = b.begin_request(500);
    REQUIRE(lease.choose_prefiller() == addr("p:1"));
    lease.prefill_failed();
    REQUIRE(lease.choose_prefiller() == addr("p:2"));
    auto other = b.begin_request(500);
    CHECK(other.choose_prefiller() == addr("p:3"));  // idle, never picked
    other.reset();
    auto later = b.begin_request(500);
    CHECK(later.choose_prefiller() == addr("p:1"));  // idle, picked longest ago: not avoided
    later.reset();
    lease.reset();
    require_idle(b);
  }

  SECTION("the decoder choice is not affected") {
    balancer pd(addrs({"p:1", "p:2"}), addrs({"d:1", "d:2"}));
    auto lease = pd.begin_request(500);
    REQUIRE(lease.choose_prefiller() == addr("p:1"));
    lease.prefill_failed();
    CHECK(lease.choose_decoder() == addr("d:1"));
    CHECK(lease.choose_prefiller() == addr("p:2"));
    lease.reset();
    require_idle(pd);
  }
}

TEST_CASE("a failed prefiller that is the only one is chosen again", "[balancer]") {
  balancer b(addrs({"p:1"}), addrs({"d:1"}));
  auto lease = b.begin_request(500);
  REQUIRE(lease.choose_prefiller() == addr("p:1"));
  lease.prefill_failed();
  CHECK(lease.choose_prefiller() == addr("p:1"));
  CHECK(snapshot_of(b, role::prefill, "p:1").inflight == 1);
  CHECK(snapshot_of(b, role::prefill, "p:1").active_kv_cache == balancer::prefill_score(500));
  lease.prefill_failed();
  CHECK(lease.choose_prefiller() == addr("p:1"));
  lease.reset();
  require_idle(b);
}

TEST_CASE("a failed prefiller removed meanwhile leaves the others to choose from", "[balancer]") {
  balancer b(addrs({"p:1", "p:2"}), addrs({"d:1"}));
  auto lease = b.begin_request(500);
  REQUIRE(lease.choose_prefiller() == addr("p:1"));
  lease.prefill_failed();
  // p:2 goes (isolated: a request is in flight); the failed p:1 is then the only choice left.
  auto removed = b.remove(role::prefill, addrs({"p:2"}));
  REQUIRE(removed.isolated);
  CHECK(lease.choose_prefiller() == addr("p:1"));
  lease.reset();
  require_idle(b);
}

TEST_CASE("a failed decoder is avoided by the next choice of the same lease", "[balancer]") {
  balancer b(addrs({"p:1"}), addrs({"d:1", "d:2", "d:3"}));

  SECTION("even though it is idle again and first in the tie") {
    auto lease = b.begin_request(500);
    REQUIRE(lease.choose_decoder() == addr("d:1"));
    lease.decode_failed();
    CHECK(lease.choose_decoder() == addr("d:2"));
    CHECK(snapshot_of(b, role::decode, "d:1").inflight == 0);
    CHECK(snapshot_of(b, role::decode, "d:1").active_tokens == 0.0);
    CHECK(snapshot_of(b, role::decode, "d:2").active_tokens == 500.0);
    CHECK(lease.choose_decoder() == addr("d:3"));  // still avoided; the tie rotates
    lease.reset();
    require_idle(b);
  }

  SECTION("even though it is the least loaded") {
    // d:2 and d:3 carry bigger requests than the one under test; d:1 is idle.
    auto filler = b.begin_request(10);
    auto big3 = b.begin_request(200000);
    auto big2 = b.begin_request(100000);
    REQUIRE(filler.choose_decoder() == addr("d:1"));
    REQUIRE(big3.choose_decoder() == addr("d:2"));
    REQUIRE(big2.choose_decoder() == addr("d:3"));
    filler.reset();
    REQUIRE(snapshot_of(b, role::decode, "d:1").inflight == 0);

    auto lease = b.begin_request(10);
    REQUIRE(lease.choose_decoder() == addr("d:1"));
    lease.decode_failed();
    CHECK(lease.choose_decoder() == addr("d:3"));
    lease.reset();
    big2.reset();
    big3.reset();
    require_idle(b);
  }

  SECTION("every failed instance is avoided, then the least loaded of them is the fallback") {
    auto lease = b.begin_request(500);
    REQUIRE(lease.choose_decoder() == addr("d:1"));
    lease.decode_failed();
    REQUIRE(lease.choose_decoder() == addr("d:2"));
    lease.decode_failed();
    CHECK(lease.choose_decoder() == addr("d:3"));
    lease.decode_failed();
    CHECK(lease.choose_decoder() == addr("d:1"));
    lease.reset();
    require_idle(b);
  }

  SECTION("other leases are not affected") {
    auto lease = b.begin_request(500);
    REQUIRE(lease.choose_decoder() == addr("d:1"));
    lease.decode_failed();
    REQUIRE(lease.choose_decoder() == addr("d:2"));
    auto other = b.begin_request(500);
    CHECK(other.choose_decoder() == addr("d:3"));  // idle, never picked
    auto later = b.begin_request(500);
    CHECK(later.choose_decoder() == addr("d:1"));  // not avoided by other leases
    later.reset();
    other.reset();
    lease.reset();
    require_idle(b);
  }

  SECTION("the prefiller choice is not affected") {
    balancer pd(addrs({"p:1", "p:2"}), addrs({"d:1", "d:2"}));
    auto lease = pd.begin_request(500);
    REQUIRE(lease.choose_decoder() == addr("d:1"));
    lease.decode_failed();
    CHECK(lease.choose_prefiller() == addr("p:1"));
    CHECK(lease.choose_decoder() == addr("d:2"));
    lease.reset();
    require_idle(pd);
  }
}

TEST_CASE("a failed decoder that is the only one is chosen again", "[balancer]") {
  balancer b(addrs({"p:1"}), addrs({"d:1"}));
  auto lease = b.begin_request(500);
  REQUIRE(lease.choose_decoder() == addr("d:1"));
  lease.decode_failed();
  CHECK(lease.choose_decoder() == addr("d:1"));
  CHECK(snapshot_of(b, role::decode, "d:1").inflight == 1);
  CHECK(snapshot_of(b, role::decode, "d:1").active_tokens == 500.0);
  lease.reset();
  require_idle(b);
}

TEST_CASE("failing with nothing held avoids nothing", "[balancer]") {
  balancer b(addrs({"p:1", "p:2"}), addrs({"d:1", "d:2"}));
  auto lease = b.begin_request(500);
  lease.prefill_failed();
  lease.decode_failed();
  CHECK(lease.choose_prefiller() == addr("p:1"));
  CHECK(lease.choose_decoder() == addr("d:1"));
  // Released on the first decode byte: a later failure report has no prefiller to blame, so
  // both stay candidates (the tie goes to p:2, picked less recently).
  lease.release_prefill();
  lease.prefill_failed();
  CHECK(lease.choose_prefiller() == addr("p:2"));
  CHECK(lease.choose_prefiller() == addr("p:1"));
  lease.reset();
  require_idle(b);
}

// A moved lease keeps the instances that failed its request.
TEST_CASE("the failed instances move with the lease", "[balancer]") {
  balancer b(addrs({"p:1", "p:2"}), addrs({"d:1", "d:2"}));
  auto lease = b.begin_request(500);
  REQUIRE(lease.choose_prefiller() == addr("p:1"));
  lease.prefill_failed();
  request_lease moved(std::move(lease));
  CHECK(moved.choose_prefiller() == addr("p:2"));
}

// The lease assigned to does not keep the overwritten request's failed instances.
TEST_CASE("a lease move-assigned over one with failures does not inherit them", "[balancer]") {
  balancer b(addrs({"p:1", "p:2"}), addrs({"d:1", "d:2"}));
  auto lease = b.begin_request(500);
  REQUIRE(lease.choose_decoder() == addr("d:1"));
  lease.decode_failed();
  lease = b.begin_request(500);                  // a new request in the same variable
  CHECK(lease.choose_decoder() == addr("d:2"));  // the tie: d:2 was picked less recently
  CHECK(lease.choose_decoder() == addr("d:1"));  // d:1 is not avoided
}

TEST_CASE("no instance to choose gives nullopt", "[balancer]") {
  SECTION("no backends at all") {
    balancer b({}, {});
    auto lease = b.begin_request(10);
    CHECK_FALSE(lease.choose_prefiller());
    CHECK_FALSE(lease.choose_decoder());
    CHECK(b.request_num() == 1);
    lease.reset();
    CHECK(b.request_num() == 0);
  }
  SECTION("one role missing") {
    balancer b(addrs({"p:1"}), {});
    auto lease = b.begin_request(10);
    CHECK(lease.choose_prefiller());
    CHECK_FALSE(lease.choose_decoder());
    CHECK(b.active_count(role::prefill) == 1);
    CHECK(b.active_count(role::decode) == 0);
  }
  SECTION("an inactive lease") {
    balancer b(addrs({"p:1"}), addrs({"d:1"}));
    request_lease lease;
    CHECK_FALSE(lease.active());
    CHECK_FALSE(lease.choose_prefiller());
    CHECK_FALSE(lease.choose_decoder());
    lease.release_prefill();
    lease.reset();
    require_idle(b);
  }
}

TEST_CASE("remove with no request in flight erases at once", "[balancer]") {
  balancer b(addrs({"p:1"}), addrs({"localhost:8002", "d:2", "d:3"}));
  // Matched through the local-host aliases; an unknown address matches nothing.
  auto r = b.remove(role::decode, addrs({"127.0.0.1:8002", "d:3", "nowhere:1"}));
  CHECK_FALSE(r.isolated);
  CHECK(r.removed == addrs({"localhost:8002", "d:3"}));
  CHECK(b.active_count(role::decode) == 1);
  auto all = b.instances();
  REQUIRE(all.size() == 2);
  CHECK(all[0].address == addr("p:1"));
  CHECK(all[1].address == addr("d:2"));

  // The role matters: a prefill remove does not touch decoders.
  CHECK(b.remove(role::prefill, addrs({"d:2"})).removed.empty());
  CHECK(b.active_count(role::decode) == 1);

  auto lease = b.begin_request(1);
  CHECK(lease.choose_decoder() == addr("d:2"));
}

TEST_CASE("remove with requests in flight isolates until request_num reaches 0", "[balancer]") {
  balancer b(addrs({"p:1"}), addrs({"d:1", "d:2"}));
  auto holder = b.begin_request(100);
  REQUIRE(holder.choose_decoder() == addr("d:1"));
  auto other = b.begin_request(5);
  REQUIRE(other.choose_decoder() == addr("d:2"));

  auto r = b.remove(role::decode, addrs({"d:1"}));
  CHECK(r.isolated);
  CHECK(r.removed == addrs({"d:1"}));
  CHECK(b.active_count(role::decode) == 1);
  CHECK(snapshot_of(b, role::decode, "d:1").isolated);
  CHECK(snapshot_of(b, role::decode, "d:1").active_tokens == 100.0);

  // Removing it again matches nothing: it is no longer active.
  CHECK(b.remove(role::decode, addrs({"d:1"})).removed.empty());

  // d:1 is idle once its holder ends, and d:2 is loaded, yet d:1 is never chosen.
  holder.reset();
  CHECK(snapshot_of(b, role::decode, "d:1").active_tokens == 0.0);
  for (int i = 0; i < 5; ++i) {
    auto lease = b.begin_request(1000);
    CHECK(lease.choose_decoder() == addr("d:2"));
  }
  CHECK(b.instances().size() == 3);

  // Isolating the last decoder leaves nothing to choose.
  CHECK(b.remove(role::decode, addrs({"d:2"})).isolated);
  {
    auto lease = b.begin_request(1);
    CHECK_FALSE(lease.choose_decoder());
    CHECK(lease.choose_prefiller() == addr("p:1"));
  }
  CHECK(b.instances().size() == 3);

  other.reset();
  CHECK(b.request_num() == 0);
  auto left = b.instances();
  REQUIRE(left.size() == 1);
  CHECK(left[0].address == addr("p:1"));
  require_idle(b);
}

TEST_CASE("pending instances are probed on the injected clock", "[balancer]") {
  time_point now{};
  balancer::options opts;
  opts.max_waiting_retries = 3;
  opts.waiting_retry_interval = 10s;
  balancer b(addrs({"p:1"}), addrs({"d:1"}), opts, [&now] { return now; });
  now += 1h;  // any starting point: nothing depends on the clock's epoch

  CHECK_FALSE(b.next_probe_time());
  CHECK(b.due_probes().empty());

  auto queued = b.add_pending(role::decode, addrs({"d:2"}));
  CHECK(queued == addrs({"d:2"}));
  CHECK(b.pending(role::decode) == addrs({"d:2"}));
  CHECK(b.pending(role::prefill).empty());
  CHECK(b.active_count(role::decode) == 1);
  CHECK(b.instances().size() == 2);  // pending ones are not instances yet

  SECTION("/instances/remove takes a pending instance back at once, its probe result ignored") {
    auto probes = b.due_probes();
    REQUIRE(probes.size() == 1);
    auto removed = b.remove(role::decode, addrs({"d:2"}));
    CHECK(removed.removed == addrs({"d:2"}));
    CHECK_FALSE(removed.isolated);
    CHECK(b.pending(role::decode).empty());
    b.probe_result(probes[0].pending_id, true);  // the probe that was under way succeeds
    CHECK(b.active_count(role::decode) == 1);
    CHECK(b.instances().size() == 2);
    CHECK(b.due_probes().empty());
  }

  SECTION("due at once, and not again while the probe is outstanding") {
    CHECK(b.next_probe_time() == now);
    auto probes = b.due_probes();
    REQUIRE(probes.size() == 1);
    CHECK(probes[0].kind == role::decode);
    CHECK(probes[0].address == addr("d:2"));
    CHECK(b.due_probes().empty());
    CHECK_FALSE(b.next_probe_time());
    now += 1h;
    CHECK(b.due_probes().empty());
  }

  SECTION("a failed probe waits the retry interval") {
    auto probes = b.due_probes();
    REQUIRE(probes.size() == 1);
    b.probe_result(probes[0].pending_id, false);
    CHECK(b.next_probe_time() == now + 10s);
    CHECK(b.pending(role::decode) == addrs({"d:2"}));
    now += 9999ms;
    CHECK(b.due_probes().empty());
    now += 1ms;
    auto again = b.due_probes();
    REQUIRE(again.size() == 1);
    CHECK(again[0].pending_id == probes[0].pending_id);
  }

  SECTION("max_waiting_retries failures drop it") {
    for (int i = 0; i < 3; ++i) {
      auto probes = b.due_probes();
      REQUIRE(probes.size() == 1);
      CHECK(b.pending(role::decode).size() == 1);
      b.probe_result(probes[0].pending_id, false);
      now += 10s;
    }
    CHECK(b.pending(role::decode).empty());
    CHECK(b.due_probes().empty());
    CHECK_FALSE(b.next_probe_time());
    CHECK(b.active_count(role::decode) == 1);
    // Dropped: the same address may be added again.
    CHECK(b.add_pending(role::decode, addrs({"d:2"})).size() == 1);
  }

  SECTION("a successful probe makes it chooseable, last in order") {
    auto loaded = b.begin_request(50);
    REQUIRE(loaded.choose_decoder() == addr("d:1"));
    {
      auto lease = b.begin_request(1);
      CHECK(lease.choose_decoder() == addr("d:1"));  // pending: not a candidate
    }
    auto probes = b.due_probes();
    REQUIRE(probes.size() == 1);
    b.probe_result(probes[0].pending_id, false);
    now += 10s;
    probes = b.due_probes();
    REQUIRE(probes.size() == 1);
    b.probe_result(probes[0].pending_id, true);
    CHECK(b.pending(role::decode).empty());
    CHECK_FALSE(b.next_probe_time());
    CHECK(b.active_count(role::decode) == 2);
    auto all = b.instances();
    REQUIRE(all.size() == 3);
    CHECK(all.back().address == addr("d:2"));
    CHECK_FALSE(all.back().isolated);

    auto lease = b.begin_request(1);
    CHECK(lease.choose_decoder() == addr("d:2"));
    // A late or repeated result for it changes nothing.
    b.probe_result(probes[0].pending_id, true);
    b.probe_result(probes[0].pending_id, false);
    CHECK(b.active_count(role::decode) == 2);
  }
}

TEST_CASE("next_probe_time is the earliest due probe", "[balancer]") {
  time_point now{};
  balancer::options opts;
  opts.waiting_retry_interval = 10s;
  balancer b({}, {}, opts, [&now] { return now; });
  const time_point start = now;
  b.add_pending(role::prefill, addrs({"p:1"}));
  now += 3s;
  b.add_pending(role::decode, addrs({"d:1"}));
  CHECK(b.next_probe_time() == start);
  auto probes = b.due_probes();
  REQUIRE(probes.size() == 2);
  b.probe_result(probes[0].pending_id, false);  // due at start + 13s
  CHECK(b.next_probe_time() == start + 13s);
  now += 2s;
  b.probe_result(probes[1].pending_id, false);  // due at start + 15s
  CHECK(b.next_probe_time() == start + 13s);
  now = start + 13s;
  probes = b.due_probes();
  REQUIRE(probes.size() == 1);
  CHECK(probes[0].address == addr("p:1"));
  CHECK(b.next_probe_time() == start + 15s);
}

TEST_CASE("add_pending rejects instances already known", "[balancer]") {
  time_point now{};
  balancer b(addrs({"p:1"}), addrs({"localhost:8002"}), {}, [&now] { return now; });

  CHECK(b.add_pending(role::decode, addrs({"127.0.0.1:8002", "0.0.0.0:8002", "LOCALHOST:8002"}))
            .empty());
  // Another port, or the same address in the other role, is a different instance.
  CHECK(b.add_pending(role::decode, addrs({"localhost:8003"})) == addrs({"localhost:8003"}));
  CHECK(b.add_pending(role::prefill, addrs({"localhost:8002"})) == addrs({"localhost:8002"}));
  // Already pending, directly or through an alias, or twice in one call.
  CHECK(b.add_pending(role::decode, addrs({"0.0.0.0:8003"})).empty());
  CHECK(b.add_pending(role::decode, addrs({"d:5", "d:5"})) == addrs({"d:5"}));
  CHECK(b.pending(role::decode) == addrs({"localhost:8003", "d:5"}));
  CHECK(b.due_probes().size() == 3);

  SECTION("an isolated instance can be added back") {
    auto lease = b.begin_request(1);
    REQUIRE(b.remove(role::decode, addrs({"localhost:8002"})).isolated);
    CHECK(b.add_pending(role::decode, addrs({"localhost:8002"})).size() == 1);
  }
}

TEST_CASE("threads sharing one balancer leave every counter at 0", "[balancer][threads]") {
  balancer b(addrs({"p:1", "p:2", "p:3"}), addrs({"d:1", "d:2", "d:3", "d:4", "d:5"}));
  constexpr int threads = 4;
  constexpr int per_thread = 10000;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&b, t] {
      std::mt19937 rng(static_cast<std::uint32_t>(t));
      std::uniform_int_distribution<std::size_t> bytes(0, 200000);
      std::uniform_int_distribution<int> ending(0, 4);
      request_lease held;  // keeps one request overlapping the next
      for (int i = 0; i < per_thread; ++i) {
        auto lease = b.begin_request(bytes(rng));
        if (!lease.choose_prefiller() || !lease.choose_decoder()) std::abort();
        switch (ending(rng)) {
          case 0:
            lease.release_prefill();
            break;
          case 1:
            lease.choose_prefiller();  // a retry
            lease.release_prefill();
            lease.choose_decoder();
            break;
          case 2:
            lease.reset();
            break;
          case 3:
            held = std::move(lease);
            break;
          default:
            break;
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  require_idle(b);
}
