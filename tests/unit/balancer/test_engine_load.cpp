#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <vector>

#include "balancer/engine_load.hpp"

using glm::balancer::engine_load;
using glm::balancer::engine_load_options;
using glm::balancer::engine_sample;
using glm::balancer::saturation_veto;
using namespace std::chrono_literals;

namespace {

// Time is injected: every test starts at the same arbitrary instant and moves it by hand.
const engine_load::time_point t0 = engine_load::time_point{} + 1000h;

engine_load_options every_second() {
  engine_load_options o;
  o.interval = 1s;
  return o;
}

engine_sample report(std::uint64_t running, std::uint64_t waiting, double kv,
                     engine_load::time_point taken) {
  engine_sample s;
  s.running = running;
  s.waiting = waiting;
  s.kv_usage = kv;
  s.taken = taken;
  return s;
}

struct instance {
  engine_load load;
  std::uint64_t own = 0;
};

// A least-loaded choice as a balancer would make it with these rules: the veto first, then the
// lowest effective load, ties to the first. Returns the index chosen.
std::size_t choose(std::vector<instance>& all, engine_load::time_point now) {
  saturation_veto veto;
  for (auto& i : all) veto.count(i.load.saturated(now));
  std::size_t best = all.size();
  for (std::size_t k = 0; k < all.size(); ++k) {
    if (veto.excludes(all[k].load.saturated(now))) continue;
    if (best == all.size() || all[k].load.effective_load(all[k].own, now) <
                                  all[best].load.effective_load(all[best].own, now)) {
      best = k;
    }
  }
  return best;
}

}  // namespace

TEST_CASE("the report adds only what the proxy cannot see", "[engine_load]") {
  engine_load load(every_second());
  load.on_sample(report(7, 3, 0.5, t0));
  SECTION("the engine holds more than this proxy sent: others' requests are added") {
    CHECK(load.external_load(4, t0) == 6);
    CHECK(load.effective_load(4, t0) == 10);
    CHECK(load.effective_load(0, t0) == 10);
  }
  SECTION("this proxy sent more than the (lagging) report shows: its own count stands") {
    CHECK(load.external_load(12, t0) == 0);
    CHECK(load.effective_load(12, t0) == 12);
    CHECK(load.effective_load(10, t0) == 10);
  }
}

TEST_CASE("a sample older than three intervals is ignored", "[engine_load]") {
  engine_load load(every_second());
  load.on_sample(report(40, 10, 0.97, t0));
  CHECK(load.max_age() == 3s);
  CHECK(load.effective_load(2, t0 + 3s) == 50);
  CHECK(load.saturated(t0 + 3s));
  CHECK(load.fresh_sample(t0 + 3s).has_value());

  CHECK_FALSE(load.fresh_sample(t0 + 3s + 1ns).has_value());
  CHECK(load.effective_load(2, t0 + 3s + 1ns) == 2);
  CHECK_FALSE(load.saturated(t0 + 3s + 1ns));
  // Aged out, not forgotten: /healthcheck still shows it with its age.
  REQUIRE(load.last_sample().has_value());
  CHECK(load.last_sample()->queued() == 50);
  CHECK(load.sample_age(t0 + 7s) == std::chrono::nanoseconds(7s));
  CHECK(load.sample_age(t0 - 1s) == std::chrono::nanoseconds(0));
  CHECK_FALSE(engine_load(every_second()).sample_age(t0).has_value());

  SECTION("the age follows the interval and the number of intervals") {
    engine_load_options o;
    o.interval = 100ms;
    o.max_age_intervals = 5;
    engine_load fast(o);
    fast.on_sample(report(9, 0, 0.1, t0));
    CHECK(fast.effective_load(0, t0 + 500ms) == 9);
    CHECK(fast.effective_load(0, t0 + 501ms) == 0);
  }
  SECTION("a sample stamped after now counts as taken now") {
    engine_load skew(every_second());
    skew.on_sample(report(5, 0, 0.1, t0 + 10s));
    CHECK(skew.effective_load(0, t0) == 5);
  }
}

TEST_CASE("a failing scrape never makes an instance look idle", "[engine_load]") {
  engine_load load(every_second());
  load.on_sample(report(30, 20, 0.96, t0));
  CHECK(load.up());

  load.on_scrape_failure();  // t0 + 1s: /metrics answered 500
  load.on_scrape_failure();  // t0 + 2s: it hung until the timeout
  CHECK_FALSE(load.up());
  CHECK(load.failures_in_row() == 2);
  // The last good sample still counts, saturation included, until it ages out...
  CHECK(load.effective_load(1, t0 + 2500ms) == 50);
  CHECK(load.saturated(t0 + 2500ms));
  // ...then only the proxy's own count: never less than that, never an ejection.
  CHECK(load.effective_load(1, t0 + 3500ms) == 1);
  CHECK_FALSE(load.saturated(t0 + 3500ms));

  // The next good scrape replaces it and clears the failures.
  load.on_sample(report(0, 0, 0.1, t0 + 4s));
  CHECK(load.up());
  CHECK(load.failures_in_row() == 0);
  CHECK(load.effective_load(1, t0 + 4s) == 1);
}

TEST_CASE("a sample never replaces a newer one", "[engine_load]") {
  engine_load load(every_second());
  load.on_sample(report(8, 0, 0.2, t0 + 2s));
  load.on_sample(report(1, 0, 0.99, t0 + 1s));  // an answer that overtook the later one
  REQUIRE(load.last_sample().has_value());
  CHECK(load.last_sample()->running == 8);
  CHECK_FALSE(load.saturated(t0 + 2s));
  CHECK(load.up());  // it was still a successful scrape
}

TEST_CASE("scraping off: reports change nothing", "[engine_load]") {
  engine_load load;  // interval 0, the default
  load.on_sample(report(100, 100, 1.0, t0));
  CHECK_FALSE(load.fresh_sample(t0).has_value());
  CHECK(load.effective_load(3, t0) == 3);
  CHECK_FALSE(load.saturated(t0));
}

TEST_CASE("saturation at kv_high", "[engine_load]") {
  engine_load_options o = every_second();
  o.kv_high = 0.95;
  auto at = [&](double kv) {
    engine_load load(o);
    load.on_sample(report(1, 0, kv, t0));
    return load.saturated(t0);
  };
  CHECK(at(0.95));  // at or above
  CHECK(at(1.0));
  CHECK_FALSE(at(0.9499));
  CHECK_FALSE(engine_load(o).saturated(t0));  // no report yet: unknown is not saturated
  o.kv_high = 1.01;                           // above 1: the veto is off
  CHECK_FALSE(at(1.0));
}

TEST_CASE("the saturation veto fails open", "[engine_load]") {
  SECTION("one saturated, one below: the saturated one is excluded") {
    saturation_veto veto;
    veto.count(true);
    veto.count(false);
    CHECK(veto.excludes(true));
    CHECK_FALSE(veto.excludes(false));
    CHECK(veto.below() == 1);
    CHECK(veto.saturated() == 1);
  }
  SECTION("all saturated: none is excluded") {
    saturation_veto veto;
    veto.count(true);
    veto.count(true);
    CHECK_FALSE(veto.excludes(true));
  }
  SECTION("nothing counted: nothing excluded") {
    saturation_veto veto;
    CHECK_FALSE(veto.excludes(true));
    CHECK_FALSE(veto.excludes(false));
  }
}

TEST_CASE("choices under the rules (the issue's targets, in miniature)", "[engine_load]") {
  std::vector<instance> pair{{engine_load(every_second())}, {engine_load(every_second())}};

  SECTION("a decoder at 0.97 KV usage gets no new request while the other is at 0.2") {
    pair[0].load.on_sample(report(2, 0, 0.97, t0));
    pair[1].load.on_sample(report(2, 0, 0.2, t0));
    for (int i = 0; i < 20; ++i) {
      std::size_t k = choose(pair, t0 + 500ms);
      CHECK(k == 1);
      ++pair[k].own;  // the other fills up with this proxy's requests, and still gets them
    }
    SECTION("once the report ages out, both are candidates again") {
      CHECK(choose(pair, t0 + 4s) == 0);
    }
  }
  SECTION("both saturated: the least loaded is chosen as usual") {
    pair[0].load.on_sample(report(9, 0, 0.99, t0));
    pair[1].load.on_sample(report(3, 0, 0.98, t0));
    CHECK(choose(pair, t0) == 1);
  }
  SECTION("a prefiller reporting 50 waiting is avoided until the others catch up") {
    pair[0].load.on_sample(report(0, 50, 0.3, t0));
    int to_busy = 0;
    for (int i = 0; i < 40; ++i) {
      std::size_t k = choose(pair, t0 + 100ms);
      if (k == 0) ++to_busy;
      ++pair[k].own;
    }
    CHECK(to_busy == 0);
    SECTION("its report cleared, the share returns to even") {
      pair[0].load.on_sample(report(0, 0, 0.3, t0 + 1s));
      pair[1].own = pair[0].own = 0;
      int counts[2] = {0, 0};
      for (int i = 0; i < 40; ++i) {
        std::size_t k = choose(pair, t0 + 1s);
        ++counts[k];
        ++pair[k].own;
      }
      CHECK(counts[0] == 20);
      CHECK(counts[1] == 20);
    }
  }
  SECTION("a failing /metrics: routing as with scraping off once the last sample is old") {
    pair[0].load.on_sample(report(0, 50, 0.3, t0));
    pair[0].load.on_scrape_failure();
    pair[0].load.on_scrape_failure();
    pair[0].load.on_scrape_failure();
    pair[0].load.on_scrape_failure();
    CHECK(choose(pair, t0 + 2s) == 1);  // still counts: younger than three intervals
    CHECK(choose(pair, t0 + 5s) == 0);  // aged out: own counts only, a tie to the first
  }
}
