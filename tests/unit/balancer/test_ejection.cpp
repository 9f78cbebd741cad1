#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "balancer/balancer.hpp"

using glm::balancer::backend_address;
using glm::balancer::balancer;
using glm::balancer::instance_snapshot;
using glm::balancer::probe_task;
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

std::optional<instance_snapshot> find(const balancer& b, role kind, const char* text) {
  for (const auto& s : b.instances()) {
    if (s.kind == kind && s.address == addr(text)) return s;
  }
  return std::nullopt;
}

instance_snapshot snapshot_of(const balancer& b, role kind, const char* text) {
  auto s = find(b, kind, text);
  if (!s) FAIL("no instance " << text);
  return *s;
}

void require_idle(const balancer& b) {
  CHECK(b.request_num() == 0);
  for (const auto& s : b.instances()) {
    INFO(to_string(s.kind) << " " << s.address.to_string());
    CHECK(s.active_tokens == 0.0);
    CHECK(s.active_kv_cache == 0.0);
    CHECK(s.inflight == 0);
  }
}

// One request per failure, each choosing afresh, as separate client requests do. Ties go to the
// least recently picked instance, so requests that land elsewhere end without a report (as
// requests that were served do) until one lands on `expected`; no other instance may be chosen
// more often than once per instance in between.
void fail_decoder(balancer& b, const char* expected, int times, bool instance_fault = true) {
  for (int k = 0; k < times; ++k) {
    bool failed = false;
    for (int attempt = 0; attempt < 8 && !failed; ++attempt) {
      auto lease = b.begin_request(10);
      auto chosen = lease.choose_decoder();
      REQUIRE(chosen);
      if (*chosen != addr(expected)) continue;
      lease.decode_failed(instance_fault);
      failed = true;
    }
    REQUIRE(failed);
  }
}

void fail_prefiller(balancer& b, const char* expected, int times) {
  for (int k = 0; k < times; ++k) {
    bool failed = false;
    for (int attempt = 0; attempt < 8 && !failed; ++attempt) {
      auto lease = b.begin_request(10);
      auto chosen = lease.choose_prefiller();
      REQUIRE(chosen);
      if (*chosen != addr(expected)) continue;
      lease.prefill_failed();
      failed = true;
    }
    REQUIRE(failed);
  }
}

// A fresh request's lease that holds `expected`: requests that land elsewhere (ties rotate) end
// unreported first.
request_lease lease_on_decoder(balancer& b, const char* expected) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto lease = b.begin_request(10);
    if (lease.choose_decoder() == addr(expected)) return lease;
  }
  FAIL("never chose " << expected);
  return {};
}

request_lease lease_on_prefiller(balancer& b, const char* expected) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto lease = b.begin_request(10);
    if (lease.choose_prefiller() == addr(expected)) return lease;
  }
  FAIL("never chose " << expected);
  return {};
}

// Whether one of the next `n` fresh requests goes to `expected` (it is in rotation).
bool decoder_within(balancer& b, const char* expected, int n) {
  bool seen = false;
  for (int k = 0; k < n; ++k) {
    auto lease = b.begin_request(10);
    seen = seen || lease.choose_decoder() == addr(expected);
  }
  return seen;
}

std::optional<backend_address> next_decoder(balancer& b) {
  auto lease = b.begin_request(10);
  return lease.choose_decoder();
}

// The one due probe, which must be for `text`.
probe_task due_probe(balancer& b, const char* text) {
  auto probes = b.due_probes();
  REQUIRE(probes.size() == 1);
  CHECK(probes[0].address == addr(text));
  CHECK(probes[0].ejected);
  return probes[0];
}

struct fixture {
  time_point now = time_point{} + 1h;  // any starting point: nothing depends on the epoch
  balancer::options opts = [] {
    balancer::options o;
    o.eject_after = 3;
    o.eject_base = 5s;
    o.eject_max = 20s;
    return o;
  }();
  balancer make(std::vector<backend_address> prefillers, std::vector<backend_address> decoders) {
    return balancer(prefillers, decoders, opts, [this] { return now; });
  }
};

}  // namespace

TEST_CASE("eject_after consecutive failures eject an instance, not fewer", "[ejection]") {
  fixture f;
  auto b = f.make(addrs({"p:1"}), addrs({"d:1", "d:2"}));

  fail_decoder(b, "d:1", 2);
  CHECK(decoder_within(b, "d:1", 2));  // still in rotation
  CHECK(snapshot_of(b, role::decode, "d:1").consecutive_failures == 2);
  CHECK_FALSE(snapshot_of(b, role::decode, "d:1").ejected);
  CHECK(b.take_ejections().empty());

  fail_decoder(b, "d:1", 1);
  auto s = snapshot_of(b, role::decode, "d:1");
  CHECK(s.ejected);
  CHECK_FALSE(s.probing);
  CHECK(s.consecutive_failures == 3);
  CHECK(s.ejections_total == 1);
  CHECK(s.eject_seconds_left == 5.0);
  CHECK(b.active_count(role::decode) == 2);  // ejected is still a member, unlike removed

  auto events = b.take_ejections();
  REQUIRE(events.size() == 1);
  CHECK(events[0].kind == role::decode);
  CHECK(events[0].address == addr("d:1"));
  CHECK(events[0].duration == 5s);
  CHECK_FALSE(events[0].after_probe);
  CHECK(b.take_ejections().empty());

  for (int k = 0; k < 5; ++k) CHECK(next_decoder(b) == addr("d:2"));
  CHECK_FALSE(snapshot_of(b, role::decode, "d:2").ejected);
  require_idle(b);
}

TEST_CASE("prefillers are ejected like decoders", "[ejection]") {
  fixture f;
  auto b = f.make(addrs({"p:1", "p:2"}), addrs({"d:1"}));
  fail_prefiller(b, "p:1", 3);
  CHECK(snapshot_of(b, role::prefill, "p:1").ejected);
  auto lease = b.begin_request(10);
  CHECK(lease.choose_prefiller() == addr("p:2"));
  CHECK(lease.choose_decoder() == addr("d:1"));
}

TEST_CASE("a success resets the consecutive failures", "[ejection]") {
  fixture f;
  auto b = f.make(addrs({"p:1"}), addrs({"d:1", "d:2"}));
  fail_decoder(b, "d:1", 2);
  {
    auto lease = lease_on_decoder(b, "d:1");
    lease.decode_succeeded();
    // Succeeding releases nothing: the lease still holds the decoder.
    CHECK(snapshot_of(b, role::decode, "d:1").inflight == 1);
  }
  CHECK(snapshot_of(b, role::decode, "d:1").consecutive_failures == 0);
  fail_decoder(b, "d:1", 2);
  CHECK_FALSE(snapshot_of(b, role::decode, "d:1").ejected);
  CHECK(snapshot_of(b, role::decode, "d:1").consecutive_failures == 2);

  // The same for a prefiller.
  fail_prefiller(b, "p:1", 2);
  {
    auto lease = lease_on_prefiller(b, "p:1");
    lease.prefill_succeeded();
  }
  fail_prefiller(b, "p:1", 2);
  CHECK_FALSE(snapshot_of(b, role::prefill, "p:1").ejected);
  require_idle(b);
}

TEST_CASE("failures that are the request's fault do not count", "[ejection]") {
  fixture f;
  auto b = f.make(addrs({"p:1"}), addrs({"d:1", "d:2"}));
  fail_decoder(b, "d:1", 10, false);
  auto s = snapshot_of(b, role::decode, "d:1");
  CHECK_FALSE(s.ejected);
  CHECK(s.consecutive_failures == 0);

  // They still steer the lease's retry elsewhere.
  auto lease = lease_on_decoder(b, "d:1");
  lease.decode_failed(false);
  CHECK(lease.choose_decoder() == addr("d:2"));
}

TEST_CASE("eject_after 0 never ejects", "[ejection]") {
  fixture f;
  f.opts.eject_after = 0;
  auto b = f.make(addrs({"p:1"}), addrs({"d:1"}));
  fail_decoder(b, "d:1", 100);
  auto s = snapshot_of(b, role::decode, "d:1");
  CHECK_FALSE(s.ejected);
  CHECK(s.consecutive_failures == 100);  // still shown, for /healthcheck
  CHECK(b.due_probes().empty());
  CHECK_FALSE(b.next_probe_time());
  CHECK(next_decoder(b) == addr("d:1"));
}

TEST_CASE("an ejected instance is not a last resort for a lease's retry", "[ejection]") {
  fixture f;
  auto b = f.make(addrs({"p:1"}), addrs({"d:1", "d:2"}));
  fail_decoder(b, "d:1", 3);
  auto lease = b.begin_request(10);
  REQUIRE(lease.choose_decoder() == addr("d:2"));
  lease.decode_failed();
  // d:2 failed this request, yet it is the only one that can be chosen.
  CHECK(lease.choose_decoder() == addr("d:2"));
  lease.decode_failed();
  lease.decode_failed();  // reported twice without a new choice: still one instance held
  CHECK(snapshot_of(b, role::decode, "d:2").consecutive_failures == 3);
  // d:2 is now ejected as well: nothing is left.
  CHECK_FALSE(lease.choose_decoder());
  lease.reset();
  require_idle(b);
}

TEST_CASE("an ejected instance comes back only after its time and a successful probe",
          "[ejection]") {
  fixture f;
  auto b = f.make(addrs({"p:1"}), addrs({"d:1", "d:2"}));
  fail_decoder(b, "d:1", 3);
  const auto ejected_at = f.now;

  CHECK(b.due_probes().empty());
  CHECK(b.next_probe_time() == ejected_at + 5s);
  f.now += 4999ms;
  CHECK(b.due_probes().empty());
  CHECK(next_decoder(b) == addr("d:2"));
  f.now += 1ms;

  // Its time is up: due for a probe, and still out of rotation until the probe succeeds.
  CHECK(snapshot_of(b, role::decode, "d:1").probing);
  CHECK(snapshot_of(b, role::decode, "d:1").eject_seconds_left == 0.0);
  CHECK(next_decoder(b) == addr("d:2"));
  auto probe = due_probe(b, "d:1");
  CHECK(probe.kind == role::decode);
  CHECK(b.due_probes().empty());  // not due again while it is under way
  CHECK_FALSE(b.next_probe_time());
  CHECK(next_decoder(b) == addr("d:2"));

  b.probe_result(probe.pending_id, true);
  auto s = snapshot_of(b, role::decode, "d:1");
  CHECK_FALSE(s.ejected);
  CHECK_FALSE(s.probing);
  CHECK(s.consecutive_failures == 0);
  CHECK(s.ejections_total == 1);  // monotonic
  CHECK(next_decoder(b) == addr("d:1"));
  CHECK(b.take_ejections().size() == 1);

  // A second result for the same probe changes nothing.
  b.probe_result(probe.pending_id, false);
  CHECK_FALSE(snapshot_of(b, role::decode, "d:1").ejected);
  require_idle(b);
}

TEST_CASE("a failed probe ejects again for twice as long, up to the cap", "[ejection]") {
  fixture f;  // base 5 s, cap 20 s
  auto b = f.make(addrs({"p:1"}), addrs({"d:1", "d:2"}));
  fail_decoder(b, "d:1", 3);
  CHECK(b.take_ejections().size() == 1);

  for (auto expected : {10s, 20s, 20s, 20s}) {
    INFO("expected ejection: " << expected.count() << " s");
    f.now += 1h;
    auto probe = due_probe(b, "d:1");
    b.probe_result(probe.pending_id, false);
    auto s = snapshot_of(b, role::decode, "d:1");
    CHECK(s.ejected);
    CHECK_FALSE(s.probing);
    CHECK(s.eject_seconds_left == std::chrono::duration<double>(expected).count());
    CHECK(b.next_probe_time() == f.now + expected);
    auto events = b.take_ejections();
    REQUIRE(events.size() == 1);
    CHECK(events[0].duration == expected);
    CHECK(events[0].after_probe);
  }
  auto s = snapshot_of(b, role::decode, "d:1");
  CHECK(s.ejections_total == 5);
  CHECK(s.consecutive_failures == 3 + 4);  // failed probes are failures too
}

TEST_CASE("a cap below the base time leaves the base time", "[ejection]") {
  fixture f;
  f.opts.eject_base = 30s;
  f.opts.eject_max = 10s;
  auto b = f.make(addrs({"p:1"}), addrs({"d:1"}));
  fail_decoder(b, "d:1", 3);
  CHECK(b.next_probe_time() == f.now + 30s);
  f.now += 30s;
  b.probe_result(due_probe(b, "d:1").pending_id, false);
  CHECK(b.next_probe_time() == f.now + 30s);
}

TEST_CASE("a long run of failed probes neither overflows nor passes the cap", "[ejection]") {
  fixture f;
  f.opts.eject_base = 1ms;
  f.opts.eject_max = std::chrono::hours(24 * 365);
  auto b = f.make(addrs({"p:1"}), addrs({"d:1"}));
  fail_decoder(b, "d:1", 3);
  for (int k = 0; k < 200; ++k) {
    f.now += std::chrono::hours(24 * 366);
    b.probe_result(due_probe(b, "d:1").pending_id, false);
  }
  CHECK(b.next_probe_time() == f.now + std::chrono::hours(24 * 365));
}

TEST_CASE("the ejection time starts over once an instance has served as long as its last one",
          "[ejection]") {
  fixture f;  // base 5 s, cap 20 s
  auto b = f.make(addrs({"p:1"}), addrs({"d:1", "d:2"}));
  fail_decoder(b, "d:1", 3);  // 5 s
  f.now += 5s;
  b.probe_result(due_probe(b, "d:1").pending_id, false);  // 10 s
  f.now += 10s;
  b.probe_result(due_probe(b, "d:1").pending_id, true);
  const auto back = f.now;

  SECTION("failing again soon continues the run: 20 s") {
    f.now = back + 9999ms;
    fail_decoder(b, "d:1", 3);
    CHECK(b.next_probe_time() == f.now + 20s);
  }
  SECTION("failing again after 10 s in rotation starts over: 5 s") {
    f.now = back + 10s;
    fail_decoder(b, "d:1", 3);
    CHECK(b.next_probe_time() == f.now + 5s);
  }
}

TEST_CASE("with every instance of a role ejected, nothing is chosen and retry_after says when",
          "[ejection]") {
  fixture f;
  auto b = f.make(addrs({"p:1", "p:2"}), addrs({"d:1"}));
  CHECK(b.retry_after(role::prefill) == 1s);  // nothing ejected: the minimum

  fail_prefiller(b, "p:1", 3);  // due at +5 s
  f.now += 1800ms;
  fail_prefiller(b, "p:2", 3);  // due at +6.8 s
  {
    auto lease = b.begin_request(10);
    CHECK_FALSE(lease.choose_prefiller());
    CHECK(lease.choose_decoder() == addr("d:1"));  // the other role is untouched
  }
  // The earliest, p:1, is due in 3.2 s: rounded up.
  CHECK(b.retry_after(role::prefill) == 4s);
  CHECK(b.retry_after(role::decode) == 1s);
  f.now += 3s;
  CHECK(b.retry_after(role::prefill) == 1s);  // 0.2 s left: at least 1
  f.now += 400ms;
  CHECK(b.retry_after(role::prefill) == 1s);  // p:1 is due, its probe not yet answered

  // A failed probe puts p:1 10 s further; p:2, due at +6.8 s, is then the earliest.
  auto probe = due_probe(b, "p:1");
  b.probe_result(probe.pending_id, false);
  CHECK(b.retry_after(role::prefill) == 2s);  // 1.6 s left
  require_idle(b);
}

TEST_CASE("requests in flight on an ejected instance neither extend nor end its ejection",
          "[ejection]") {
  fixture f;
  auto b = f.make(addrs({"p:1"}), addrs({"d:1"}));
  auto failing = b.begin_request(100);
  REQUIRE(failing.choose_decoder() == addr("d:1"));
  auto lucky = b.begin_request(200);
  REQUIRE(lucky.choose_decoder() == addr("d:1"));

  fail_decoder(b, "d:1", 3);
  const auto due = b.next_probe_time();
  REQUIRE(due);
  CHECK(snapshot_of(b, role::decode, "d:1").inflight == 2);

  f.now += 1s;
  failing.decode_failed();
  lucky.decode_succeeded();
  auto s = snapshot_of(b, role::decode, "d:1");
  CHECK(s.ejected);
  CHECK(s.ejections_total == 1);
  CHECK(s.consecutive_failures == 3);
  CHECK(b.next_probe_time() == due);

  failing.reset();
  lucky.reset();
  require_idle(b);
}

TEST_CASE("an ejected instance can be removed", "[ejection]") {
  fixture f;
  auto b = f.make(addrs({"p:1"}), addrs({"d:1", "d:2"}));

  SECTION("at once when idle, with its probe's late result ignored") {
    fail_decoder(b, "d:1", 3);
    f.now += 5s;
    auto probe = due_probe(b, "d:1");
    auto r = b.remove(role::decode, addrs({"d:1"}));
    CHECK(r.removed == addrs({"d:1"}));
    CHECK_FALSE(r.isolated);
    CHECK_FALSE(find(b, role::decode, "d:1"));
    b.probe_result(probe.pending_id, true);
    CHECK_FALSE(find(b, role::decode, "d:1"));
    CHECK(b.active_count(role::decode) == 1);
    CHECK_FALSE(b.next_probe_time());
    // Gone for good: it may be added again, as a new instance.
    CHECK(b.add_pending(role::decode, addrs({"d:1"})) == addrs({"d:1"}));
  }

  SECTION("isolated while a request holds it, and never probed meanwhile") {
    auto holder = b.begin_request(10);
    REQUIRE(holder.choose_decoder() == addr("d:1"));
    // d:1 carries the holder's load, so these choose d:2 first: fail d:1 through one lease.
    auto failing = b.begin_request(10);
    for (int k = 0; k < 3; ++k) {
      auto lease = b.begin_request(1000);
      REQUIRE(lease.choose_decoder() == addr("d:2"));
      lease.decode_failed(false);
      REQUIRE(lease.choose_decoder() == addr("d:1"));
      lease.decode_failed();
    }
    REQUIRE(snapshot_of(b, role::decode, "d:1").ejected);
    auto r = b.remove(role::decode, addrs({"d:1"}));
    CHECK(r.isolated);
    CHECK(r.removed == addrs({"d:1"}));
    f.now += 1h;
    CHECK(b.due_probes().empty());
    CHECK_FALSE(b.next_probe_time());
    CHECK(b.retry_after(role::decode) == 1s);
    failing.reset();
    holder.reset();
    CHECK_FALSE(find(b, role::decode, "d:1"));
  }
  require_idle(b);
}

TEST_CASE("pending and ejected instances share the probe schedule", "[ejection]") {
  fixture f;
  f.opts.waiting_retry_interval = 10s;
  auto b = f.make(addrs({"p:1"}), addrs({"d:1", "d:2"}));
  fail_decoder(b, "d:1", 3);  // due at +5 s
  REQUIRE(b.add_pending(role::decode, addrs({"d:3"})).size() == 1);
  auto first = b.due_probes();
  REQUIRE(first.size() == 1);
  CHECK(first[0].address == addr("d:3"));
  CHECK_FALSE(first[0].ejected);
  b.probe_result(first[0].pending_id, false);  // due again at +10 s
  CHECK(b.next_probe_time() == f.now + 5s);
  f.now += 5s;
  auto probe = due_probe(b, "d:1");
  CHECK(probe.pending_id != first[0].pending_id);
  CHECK(b.next_probe_time() == f.now + 5s);  // d:3's
  b.probe_result(probe.pending_id, true);
  CHECK(b.pending(role::decode) == addrs({"d:3"}));
  CHECK(decoder_within(b, "d:1", 2));
}

TEST_CASE("threads failing, succeeding and probing leave every counter at 0",
          "[ejection][threads]") {
  std::atomic<std::int64_t> ms{3'600'000};
  balancer::options opts;
  opts.eject_after = 2;
  opts.eject_base = 5ms;
  opts.eject_max = 40ms;
  balancer b(addrs({"p:1", "p:2"}), addrs({"d:1", "d:2", "d:3"}), opts,
             [&ms] { return time_point{} + std::chrono::milliseconds(ms.load()); });
  constexpr int threads = 3;
  constexpr int per_thread = 20000;
  std::atomic<int> running{threads};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::mt19937 rng(static_cast<std::uint32_t>(t));
      std::uniform_int_distribution<int> outcome(0, 5);
      request_lease held;
      for (int i = 0; i < per_thread; ++i) {
        auto lease = b.begin_request(static_cast<std::size_t>(i % 5000));
        if (lease.choose_prefiller()) {
          if (outcome(rng) < 2) {
            lease.prefill_failed(outcome(rng) != 0);
            lease.choose_prefiller();  // a retry, possibly finding nothing
          } else {
            lease.prefill_succeeded();
          }
        }
        if (lease.choose_decoder()) {
          if (outcome(rng) < 2) {
            lease.decode_failed();
          } else {
            lease.decode_succeeded();
          }
        }
        if (outcome(rng) == 0) held = std::move(lease);
        if (i % 100 == 0) ms += 1;
      }
      --running;
    });
  }
  // The prober's part: answer every due probe, mostly with success.
  std::mt19937 rng(99);
  std::uniform_int_distribution<int> ok(0, 3);
  while (running > 0) {
    for (const auto& task : b.due_probes()) b.probe_result(task.pending_id, ok(rng) != 0);
    b.take_ejections();
    std::this_thread::yield();
  }
  for (auto& th : pool) th.join();
  require_idle(b);
  std::uint64_t total = 0;
  for (const auto& s : b.instances()) total += s.ejections_total;
  CHECK(total > 0);  // the run did exercise ejection
}
