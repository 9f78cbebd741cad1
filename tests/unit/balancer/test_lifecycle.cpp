#include <catch2/catch.hpp>

#include <chrono>

#include "balancer/ejection_backoff.hpp"
#include "balancer/lifecycle.hpp"

using glm::balancer::ejection_backoff;
using glm::balancer::lifecycle;
namespace transition = glm::balancer::transition;
using namespace std::chrono_literals;

TEST_CASE("lifecycle transitions apply only where the diagram has an arrow", "[lifecycle]") {
  CHECK(transition::eject(lifecycle::active) == lifecycle::ejected);
  CHECK(transition::eject(lifecycle::probing) == lifecycle::ejected);
  CHECK_FALSE(transition::eject(lifecycle::ejected));  // in-flight failures do not re-eject
  CHECK_FALSE(transition::eject(lifecycle::pending));
  CHECK_FALSE(transition::eject(lifecycle::isolated));

  CHECK(transition::probe_started(lifecycle::ejected) == lifecycle::probing);
  CHECK(transition::probe_started(lifecycle::pending) == lifecycle::pending);
  CHECK_FALSE(transition::probe_started(lifecycle::active));

  CHECK(transition::probe_ok(lifecycle::probing) == lifecycle::active);
  CHECK(transition::probe_ok(lifecycle::pending) == lifecycle::active);
  CHECK_FALSE(transition::probe_ok(lifecycle::ejected));  // its time is not up: no probe was sent
  CHECK_FALSE(transition::probe_ok(lifecycle::isolated));

  CHECK(transition::probe_failed(lifecycle::probing) == lifecycle::ejected);
  CHECK(transition::probe_failed(lifecycle::pending) == lifecycle::pending);
  CHECK_FALSE(transition::probe_failed(lifecycle::active));

  for (auto s : {lifecycle::active, lifecycle::ejected, lifecycle::probing}) {
    CHECK(transition::isolate(s) == lifecycle::isolated);
  }
  CHECK_FALSE(transition::isolate(lifecycle::pending));
  CHECK_FALSE(transition::isolate(lifecycle::isolated));

  CHECK(to_string(lifecycle::probing) == "probing");
  CHECK(to_string(lifecycle::pending) == "pending");
}

TEST_CASE("ejection backoff doubles, caps, and starts over after a quiet period", "[lifecycle]") {
  CHECK(ejection_backoff::duration(1, 5s, 300s) == 5s);
  CHECK(ejection_backoff::duration(3, 5s, 300s) == 20s);
  CHECK(ejection_backoff::duration(1000, 5s, 300s) == 300s);
  CHECK(ejection_backoff::duration(2, 5s, 1s) == 5s);  // the cap is at least the base

  ejection_backoff b;
  std::chrono::steady_clock::time_point t{};
  CHECK(b.eject(t, false, 5s, 300s) == 5s);
  CHECK(b.eject(t + 5s, true, 5s, 300s) == 10s);  // a failed probe continues the run
  b.back(t + 15s);
  CHECK(b.eject(t + 20s, false, 5s, 300s) == 20s);  // back for 5 s < 10 s: still the same run
  b.back(t + 40s);
  CHECK(b.eject(t + 70s, false, 5s, 300s) == 5s);  // back for 30 s >= 20 s: starts over
  CHECK(b.total() == 4);
}
