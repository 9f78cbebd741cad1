#include <catch2/catch.hpp>
#include <thread>
#include <vector>

#include "proxy/front/connection_gate.hpp"

using glm::proxy::connection_gate;

TEST_CASE("connection_gate admits up to its limit", "[connection_gate]") {
  connection_gate gate(2);
  auto a = gate.try_enter();
  auto b = gate.try_enter();
  REQUIRE(a);
  REQUIRE(b);
  CHECK(gate.held() == 2);
  CHECK_FALSE(gate.try_enter());
  CHECK(gate.held() == 2);  // a refusal takes nothing

  SECTION("a ticket's destruction gives its place back") {
    a.reset();
    CHECK(gate.held() == 1);
    auto c = gate.try_enter();
    CHECK(c);
    CHECK(gate.held() == 2);
  }
  SECTION("a moved ticket gives its place back once") {
    connection_gate::ticket moved = std::move(*b);
    CHECK_FALSE(*b);
    b.reset();
    CHECK(gate.held() == 2);
    moved.reset();
    CHECK(gate.held() == 1);
    moved.reset();
    CHECK(gate.held() == 1);
  }
  SECTION("move assignment gives back the place it overwrites") {
    *a = std::move(*b);
    CHECK(gate.held() == 1);
  }
}

TEST_CASE("connection_gate with limit 0 counts but never refuses", "[connection_gate]") {
  connection_gate gate(0);
  std::vector<connection_gate::ticket> held;
  for (int i = 0; i < 1000; ++i) {
    auto t = gate.try_enter();
    REQUIRE(t);
    held.push_back(std::move(*t));
  }
  CHECK(gate.held() == 1000);
  held.clear();
  CHECK(gate.held() == 0);
}

TEST_CASE("connection_gate never goes over its limit across threads", "[connection_gate]") {
  // Accepts happen on one thread and releases on many in the server; here every thread does
  // both, which is harsher.
  connection_gate gate(3);
  std::atomic<std::size_t> most{0};
  std::atomic<std::size_t> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        auto ticket = gate.try_enter();
        if (!ticket) continue;
        ++admitted;
        std::size_t now = gate.held();
        std::size_t seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(most.load() <= 3);
  CHECK(admitted.load() > 0);
  CHECK(gate.held() == 0);
}
