#include <atomic>
#include <catch2/catch.hpp>
#include <optional>
#include <thread>
#include <vector>

#include "proxy/core/inflight_gate.hpp"

using glm::proxy::inflight_gate;
using outcome = inflight_gate::outcome;
namespace net = boost::asio;
using namespace std::chrono_literals;

namespace {

// No test waits for a deadline to pass except the one about timing out, whose deadline is 1 ms
// and whose outcome, not its duration, is checked. Everything else uses an hour, which no test
// reaches: an outcome there can only come from a release or a cancellation.
constexpr auto long_wait = std::chrono::hours(1);

// Starts gate.acquire(wait) on `io`; the admission lands in `out` when it completes.
void start(net::io_context& io, inflight_gate& gate, std::chrono::steady_clock::duration wait,
           std::optional<inflight_gate::admission>& out, net::cancellation_slot slot = {}) {
  net::co_spawn(
      io, gate.acquire(wait),
      net::bind_cancellation_slot(slot, [&out](std::exception_ptr e, inflight_gate::admission a) {
        REQUIRE_FALSE(e);
        out = std::move(a);
      }));
}

// Runs whatever is ready, without waiting for timers.
void settle(net::io_context& io) {
  io.restart();
  io.poll();
}

}  // namespace

TEST_CASE("inflight_gate admits up to its limit at once", "[inflight_gate]") {
  inflight_gate gate(2, 2);
  auto a = gate.try_acquire();
  auto b = gate.try_acquire();
  REQUIRE(a);
  REQUIRE(b);
  CHECK(gate.inflight() == 2);
  CHECK_FALSE(gate.try_acquire());
  a->reset();
  CHECK(gate.inflight() == 1);
  CHECK(gate.try_acquire());  // taken and given back at once
  CHECK(gate.inflight() == 1);
}

TEST_CASE("inflight_gate without a wait refuses at once when full", "[inflight_gate]") {
  net::io_context io;
  inflight_gate gate(1, 10);
  auto held = gate.try_acquire();
  std::optional<inflight_gate::admission> got;
  start(io, gate, 0s, got);
  settle(io);
  REQUIRE(got);
  CHECK(got->result == outcome::full);
  CHECK_FALSE(got->held);
  CHECK(gate.waiting() == 0);
  CHECK(gate.inflight() == 1);
}

TEST_CASE("inflight_gate admits a free slot through acquire without queueing", "[inflight_gate]") {
  net::io_context io;
  inflight_gate gate(1, 1);
  std::optional<inflight_gate::admission> got;
  start(io, gate, 0s, got);
  settle(io);
  REQUIRE(got);
  CHECK(got->result == outcome::admitted);
  CHECK(got->held);
  CHECK(gate.inflight() == 1);
  got.reset();
  CHECK(gate.inflight() == 0);
}

TEST_CASE("inflight_gate hands released slots to waiters first in, first out", "[inflight_gate]") {
  net::io_context io;
  inflight_gate gate(1, 10);
  auto held = gate.try_acquire();
  std::optional<inflight_gate::admission> first, second, third;
  start(io, gate, long_wait, first);
  settle(io);
  start(io, gate, long_wait, second);
  settle(io);
  start(io, gate, long_wait, third);
  settle(io);
  CHECK(gate.waiting() == 3);
  CHECK_FALSE(first);

  held->reset();
  // The slot went to the first waiter, not back to the pool: a newcomer cannot take it while
  // the wakeup is on its way.
  CHECK(gate.inflight() == 1);
  CHECK(gate.waiting() == 2);
  CHECK_FALSE(gate.try_acquire());
  settle(io);
  REQUIRE(first);
  CHECK(first->result == outcome::admitted);
  CHECK_FALSE(second);
  CHECK_FALSE(third);

  first->held.reset();
  settle(io);
  REQUIRE(second);
  CHECK(second->result == outcome::admitted);
  CHECK_FALSE(third);

  second->held.reset();
  settle(io);
  REQUIRE(third);
  CHECK(third->result == outcome::admitted);
  third->held.reset();
  CHECK(gate.inflight() == 0);
  CHECK(gate.waiting() == 0);
}

TEST_CASE("inflight_gate bounds its line", "[inflight_gate]") {
  net::io_context io;
  inflight_gate gate(1, 1);
  auto held = gate.try_acquire();
  std::optional<inflight_gate::admission> waiting, refused;
  start(io, gate, long_wait, waiting);
  settle(io);
  start(io, gate, long_wait, refused);
  settle(io);
  REQUIRE(refused);
  CHECK(refused->result == outcome::full);
  CHECK_FALSE(waiting);
  CHECK(gate.waiting() == 1);
  held->reset();
  settle(io);
  REQUIRE(waiting);
  CHECK(waiting->result == outcome::admitted);
}

TEST_CASE("inflight_gate times a waiter out and forgets it", "[inflight_gate]") {
  net::io_context io;
  inflight_gate gate(1, 10);
  auto held = gate.try_acquire();
  std::optional<inflight_gate::admission> got;
  start(io, gate, 1ms, got);
  io.run();  // only the waiter's timer is pending
  REQUIRE(got);
  CHECK(got->result == outcome::timed_out);
  CHECK_FALSE(got->held);
  CHECK(gate.waiting() == 0);
  // The slot given back later is not handed to the waiter that left.
  held->reset();
  CHECK(gate.inflight() == 0);
}

TEST_CASE("inflight_gate lets a cancelled waiter leave the line", "[inflight_gate]") {
  net::io_context io;
  inflight_gate gate(1, 10);
  auto held = gate.try_acquire();
  net::cancellation_signal cancel;
  std::optional<inflight_gate::admission> leaving, staying;
  start(io, gate, long_wait, leaving, cancel.slot());
  settle(io);
  start(io, gate, long_wait, staying);
  settle(io);
  CHECK(gate.waiting() == 2);

  cancel.emit(net::cancellation_type::terminal);
  settle(io);
  REQUIRE(leaving);
  CHECK(leaving->result == outcome::cancelled);
  CHECK(gate.waiting() == 1);

  held->reset();
  settle(io);
  REQUIRE(staying);
  CHECK(staying->result == outcome::admitted);
  staying->held.reset();
  CHECK(gate.inflight() == 0);
}

TEST_CASE("inflight_gate keeps a slot that reached a waiter as it was cancelled",
          "[inflight_gate]") {
  net::io_context io;
  inflight_gate gate(1, 10);
  auto held = gate.try_acquire();
  net::cancellation_signal cancel;
  std::optional<inflight_gate::admission> got;
  start(io, gate, long_wait, got, cancel.slot());
  settle(io);
  held->reset();  // handed over; the wakeup is posted but has not run
  cancel.emit(net::cancellation_type::terminal);
  settle(io);
  REQUIRE(got);
  // Whichever woke it, the slot is the waiter's: reporting "cancelled" would leak it.
  CHECK(got->result == outcome::admitted);
  CHECK(gate.inflight() == 1);
  got.reset();
  CHECK(gate.inflight() == 0);
}

TEST_CASE("inflight_gate forgets waiters whose io_context is destroyed", "[inflight_gate]") {
  inflight_gate gate(1, 10);
  auto held = gate.try_acquire();
  std::optional<inflight_gate::admission> plain, handed;
  {
    net::io_context io;
    start(io, gate, long_wait, plain);
    settle(io);
    start(io, gate, long_wait, handed);
    settle(io);
    CHECK(gate.waiting() == 2);
    SECTION("a slot handed to a waiter that never woke comes back") {
      held->reset();  // to `plain`, whose wakeup never runs
      CHECK(gate.inflight() == 1);
    }
    gate.close();
  }  // the frames are destroyed with the io_context
  CHECK_FALSE(plain);
  CHECK_FALSE(handed);
  CHECK(gate.waiting() == 0);
  held.reset();
  CHECK(gate.inflight() == 0);
}

TEST_CASE("inflight_gate after close gives slots back instead of handing them over",
          "[inflight_gate]") {
  net::io_context io;
  inflight_gate gate(1, 10);
  auto held = gate.try_acquire();
  std::optional<inflight_gate::admission> got;
  start(io, gate, 1ms, got);
  settle(io);
  gate.close();
  held->reset();
  CHECK(gate.inflight() == 0);
  io.run();
  REQUIRE(got);
  CHECK(got->result == outcome::timed_out);
  CHECK(gate.waiting() == 0);
}

TEST_CASE("inflight_gate holds its limit across threads", "[inflight_gate]") {
  // Two single-threaded io_contexts, as two workers: every release on one may wake a waiter on
  // the other. All requests must be served, never more than the limit at once, and nothing left
  // held at the end.
  constexpr std::size_t limit = 3;
  constexpr int per_worker = 300;
  inflight_gate gate(limit, 2 * per_worker);
  std::atomic<std::size_t> now{0}, most{0}, admitted{0}, refused{0};

  auto request = [&]() -> net::awaitable<void> {
    auto a = co_await gate.acquire(long_wait);
    if (a.result != outcome::admitted) {
      ++refused;
      co_return;
    }
    ++admitted;
    std::size_t n = ++now;
    std::size_t seen = most.load();
    while (n > seen && !most.compare_exchange_weak(seen, n)) {
    }
    // Hold the slot across a couple of turns of the loop, as a real request would.
    auto ex = co_await net::this_coro::executor;
    for (int i = 0; i < 2; ++i) co_await net::post(ex, net::use_awaitable);
    --now;
  };

  std::vector<std::unique_ptr<net::io_context>> workers;
  for (int w = 0; w < 2; ++w) {
    workers.push_back(std::make_unique<net::io_context>(1));
    for (int i = 0; i < per_worker; ++i) net::co_spawn(*workers.back(), request(), net::detached);
  }
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&io = *w] { io.run(); });
  for (auto& t : threads) t.join();

  CHECK(admitted.load() == 2 * per_worker);
  CHECK(refused.load() == 0);
  CHECK(most.load() <= limit);
  CHECK(gate.inflight() == 0);
  CHECK(gate.waiting() == 0);
}
