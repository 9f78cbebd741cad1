#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "balancer/balancer.hpp"
#include "proxy/ops/health_report.hpp"

using glm::balancer::backend_address;
using glm::balancer::balancer;
using glm::balancer::role;
using glm::proxy::health_report;
using namespace std::chrono_literals;

namespace {

using time_point = std::chrono::steady_clock::time_point;

std::vector<backend_address> addrs(std::initializer_list<const char*> texts) {
  std::vector<backend_address> out;
  for (const char* t : texts) out.push_back(*backend_address::parse(t));
  return out;
}

void fail_decoder(balancer& b, int times) {
  for (int k = 0; k < times; ++k) {
    auto lease = b.begin_request(10);
    REQUIRE(lease.choose_decoder());
    lease.decode_failed();
  }
}

std::string active(const char* role, const char* address, int inflight = 0) {
  return std::string(R"({"role":")") + role + R"(","address":")" + address +
         R"(","state":"active","inflight":)" + std::to_string(inflight) +
         R"(,"consecutive_failures":0,"ejections":0})";
}

}  // namespace

TEST_CASE("health_report keeps the reference fields and lists every instance", "[health]") {
  time_point now{};
  balancer b(addrs({"p:1"}), addrs({"d:1", "[::1]:2"}), {}, [&now] { return now; });
  auto lease = b.begin_request(10);
  REQUIRE(lease.choose_decoder());
  CHECK(
      health_report(b) ==
      R"({"status":"ok","prefill_instances":1,"decode_instances":2,"request_num":1,"prefill_policy":"least_loaded","decode_policy":"least_loaded",)"
      R"("instances":[)" +
          active("prefill", "p:1") + "," + active("decode", "d:1", 1) + "," +
          active("decode", "[::1]:2") + "]}");
}

TEST_CASE("health_report shows ejection, probing, isolation and pending instances", "[health]") {
  time_point now{};
  balancer::options opts;
  opts.eject_after = 3;
  opts.eject_base = 5s;
  balancer b(addrs({"p:1"}), addrs({"d:1"}), opts, [&now] { return now; });

  fail_decoder(b, 3);
  now += 1250ms;
  const std::string prefix =
      R"({"status":"degraded","prefill_instances":1,"decode_instances":1,"request_num":0,"prefill_policy":"least_loaded","decode_policy":"least_loaded",)"
      R"("instances":[)" +
      active("prefill", "p:1") + ",";
  CHECK(health_report(b) ==
        prefix + R"({"role":"decode","address":"d:1","state":"ejected","inflight":0,)"
                 R"("consecutive_failures":3,"ejections":1,"retry_in_seconds":3.750}]})");

  now += 3750ms;
  CHECK(health_report(b) ==
        prefix + R"({"role":"decode","address":"d:1","state":"probing","inflight":0,)"
                 R"("consecutive_failures":3,"ejections":1}]})");

  REQUIRE(b.add_pending(role::decode, addrs({"d:9"})).size() == 1);
  auto holder = b.begin_request(10);
  REQUIRE(holder.choose_prefiller());
  REQUIRE(b.remove(role::decode, addrs({"d:1"})).isolated);
  CHECK(
      health_report(b) ==
      R"({"status":"degraded","prefill_instances":1,"decode_instances":0,"request_num":1,"prefill_policy":"least_loaded","decode_policy":"least_loaded",)"
      R"("instances":[)" +
          active("prefill", "p:1", 1) + "," +
          R"({"role":"decode","address":"d:1","state":"isolated","inflight":0,)"
          R"("consecutive_failures":3,"ejections":1},)"
          R"({"role":"decode","address":"d:9","state":"pending","inflight":0,)"
          R"("consecutive_failures":0,"ejections":0}]})");
}

TEST_CASE("health_report is degraded when a role has no instance at all", "[health]") {
  balancer b(addrs({"p:1"}), {});
  CHECK(
      health_report(b) ==
      R"({"status":"degraded","prefill_instances":1,"decode_instances":0,"request_num":0,"prefill_policy":"least_loaded","decode_policy":"least_loaded",)"
      R"("instances":[)" +
          active("prefill", "p:1") + "]}");
}

TEST_CASE("with scraping on, each instance shows its engine's last report and its age") {
  time_point now = time_point{} + 1000h;
  balancer::options opts;
  opts.engine.interval = 100ms;
  balancer b(addrs({"10.0.0.1:6700"}), addrs({"10.0.0.3:6800"}), opts, [&] { return now; });
  const auto targets = b.scrape_targets();
  glm::balancer::engine_sample sample;
  sample.running = 2;
  sample.waiting = 50;
  sample.kv_usage = 0.97;
  sample.taken = now;
  b.engine_report(targets[1].id, sample);
  now += 250ms;
  const std::string text = health_report(b);
  CHECK(text.find(R"("engine":{"up":false})") != std::string::npos);
  CHECK(text.find(R"("engine":{"up":true,"running":2,"waiting":50,"kv_usage":0.9700,)"
                  R"("age_seconds":0.250,"fresh":true,"saturated":true})") != std::string::npos);

  balancer off(addrs({"10.0.0.1:6700"}), addrs({"10.0.0.3:6800"}));
  CHECK(health_report(off).find("engine") == std::string::npos);
}
