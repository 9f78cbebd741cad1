#include <atomic>
#include <catch2/catch.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "proxy/core/metaserver_registry.hpp"

using glm::protocol::metaserver_callback;
using glm::proxy::metaserver_registry;
using outcome = metaserver_registry::outcome;
using result = metaserver_registry::delivery::result;
namespace net = boost::asio;
using namespace std::chrono_literals;

namespace {

// Only the test of the timeout waits for a deadline, of 0; everything else uses an hour, which no
// test reaches: an outcome can only come from a delivery, a cancel or a finish.
constexpr auto long_wait = std::chrono::hours(1);

metaserver_callback callback(const std::string& id, const std::string& extra = "1") {
  std::string body = R"({"request_id":")" + id + R"(","remote_port":)" + extra + "}";
  metaserver_callback c;
  REQUIRE_FALSE(metaserver_callback::parse(body, c));
  return c;
}

// Starts registration.wait(wait) on `io`; the result lands in `out`.
void start_wait(net::io_context& io, metaserver_registry::registration& r,
                std::chrono::steady_clock::duration wait, std::optional<bool>& out) {
  net::co_spawn(io, r.wait(wait), [&out](std::exception_ptr e, bool all_in) {
    REQUIRE_FALSE(e);
    out = all_in;
  });
}

// Starts answer_of(answer) on `io`; the outcome lands in `out`.
void start_answer(net::io_context& io, std::shared_ptr<metaserver_registry::reply> answer,
                  std::optional<outcome>& out) {
  net::co_spawn(io, metaserver_registry::answer_of(std::move(answer)),
                [&out](std::exception_ptr e, outcome o) {
                  REQUIRE_FALSE(e);
                  out = o;
                });
}

void settle(net::io_context& io) {
  io.restart();
  io.poll();
}

}  // namespace

TEST_CASE("metaserver_registry wakes the request once every id has called", "[metaserver]") {
  net::io_context io;
  metaserver_registry registry;
  auto r = registry.expect({"cmpl-x-0", "cmpl-x-1"}, io.get_executor());
  REQUIRE(r.active());
  CHECK(registry.registered() == 2);
  std::optional<bool> all_in;
  start_wait(io, r, long_wait, all_in);
  settle(io);
  CHECK_FALSE(all_in);

  // Out of order: the callbacks come back in id order.
  auto second = registry.deliver(callback("cmpl-x-1", "2"), io.get_executor());
  REQUIRE(second.how == result::accepted);
  settle(io);
  CHECK_FALSE(all_in);
  auto first = registry.deliver(callback("cmpl-x-0", "1"), io.get_executor());
  REQUIRE(first.how == result::accepted);
  settle(io);
  REQUIRE(all_in);
  CHECK(*all_in);
  auto got = r.take_callbacks();
  REQUIRE(got.size() == 2);
  CHECK(got[0].request_id == "cmpl-x-0");
  CHECK(got[0].params == R"({"request_id":"cmpl-x-0","remote_port":1})");
  CHECK(got[1].request_id == "cmpl-x-1");

  std::optional<outcome> a, b;
  start_answer(io, first.answer, a);
  start_answer(io, second.answer, b);
  settle(io);
  CHECK_FALSE(a);  // no answer before the prefill is done
  r.finish(outcome::prefilled);
  settle(io);
  CHECK(a == outcome::prefilled);
  CHECK(b == outcome::prefilled);
  CHECK(registry.registered() == 0);
  // A callback for a finished request is unknown, and changes nothing.
  CHECK(registry.deliver(callback("cmpl-x-0"), io.get_executor()).how == result::unknown);
}

TEST_CASE("metaserver_registry refuses unknown and repeated ids", "[metaserver]") {
  net::io_context io;
  metaserver_registry registry;
  auto r = registry.expect({"chatcmpl-y"}, io.get_executor());
  CHECK(registry.deliver(callback("chatcmpl-z"), io.get_executor()).how == result::unknown);
  CHECK(registry.deliver(callback("chatcmpl-y"), io.get_executor()).how == result::accepted);
  auto again = registry.deliver(callback("chatcmpl-y", "9"), io.get_executor());
  CHECK(again.how == result::duplicate);
  CHECK_FALSE(again.answer);
  auto got = r.take_callbacks();
  REQUIRE(got.size() == 1);
  CHECK(got[0].params == R"({"request_id":"chatcmpl-y","remote_port":1})");  // the first stands
}

TEST_CASE("metaserver_registry: an id registered twice leaves the second inactive",
          "[metaserver]") {
  net::io_context io;
  metaserver_registry registry;
  auto r = registry.expect({"cmpl-a-0"}, io.get_executor());
  auto clash = registry.expect({"cmpl-b-0", "cmpl-a-0"}, io.get_executor());
  CHECK(r.active());
  CHECK_FALSE(clash.active());
  CHECK(registry.registered() == 1);  // cmpl-b-0 was taken back
}

TEST_CASE("metaserver_registry: a wait ends on its timeout or on cancel", "[metaserver]") {
  net::io_context io;
  metaserver_registry registry;
  auto r = registry.expect({"cmpl-t-0"}, io.get_executor());
  std::optional<bool> all_in;
  start_wait(io, r, 0s, all_in);
  io.run();  // the timer of 0 fires
  REQUIRE(all_in);
  CHECK_FALSE(*all_in);

  auto c = registry.expect({"cmpl-c-0"}, io.get_executor());
  std::optional<bool> cancelled;
  start_wait(io, c, long_wait, cancelled);
  settle(io);
  CHECK_FALSE(cancelled);
  c.cancel();
  settle(io);
  REQUIRE(cancelled);
  CHECK_FALSE(*cancelled);
  // A callback arriving after the request stopped waiting is still answered when it ends.
  auto late = registry.deliver(callback("cmpl-c-0"), io.get_executor());
  REQUIRE(late.how == result::accepted);
  std::optional<outcome> answer;
  start_answer(io, late.answer, answer);
  settle(io);
  CHECK_FALSE(answer);
  c = {};  // the request ends without finishing: its callbacks get a failure
  settle(io);
  CHECK(answer == outcome::prefill_failed);
}

TEST_CASE("metaserver_registry: a request that ends answers its callbacks 502 and unregisters",
          "[metaserver]") {
  net::io_context io;
  metaserver_registry registry;
  std::optional<outcome> answer;
  {
    auto r = registry.expect({"cmpl-d-0", "cmpl-d-1"}, io.get_executor());
    auto d = registry.deliver(callback("cmpl-d-0"), io.get_executor());
    REQUIRE(d.how == result::accepted);
    start_answer(io, d.answer, answer);
    settle(io);
    CHECK_FALSE(answer);
  }
  settle(io);
  CHECK(answer == outcome::prefill_failed);
  CHECK(registry.registered() == 0);
  CHECK(registry.deliver(callback("cmpl-d-1"), io.get_executor()).how == result::unknown);
}

TEST_CASE("metaserver_registry: finish is idempotent, the first outcome stands", "[metaserver]") {
  net::io_context io;
  metaserver_registry registry;
  auto r = registry.expect({"cmpl-f-0"}, io.get_executor());
  auto d = registry.deliver(callback("cmpl-f-0"), io.get_executor());
  r.finish(outcome::prefill_failed);
  r.finish(outcome::prefilled);
  std::optional<outcome> answer;
  start_answer(io, d.answer, answer);  // the answer was posted before this wait began
  settle(io);
  CHECK(answer == outcome::prefill_failed);
}

TEST_CASE("metaserver_registry: callbacks on other threads wake a request on its own",
          "[metaserver]") {
  // The request on one io_context, its callbacks on two others, each run by its own thread, as
  // the workers are. Run under TSan by tests/sanitize.sh.
  constexpr int prompts = 64;
  net::io_context request_io, a_io, b_io;
  metaserver_registry registry;
  std::vector<std::string> ids;
  for (int i = 0; i < prompts; ++i) ids.push_back("cmpl-m-" + std::to_string(i));
  auto r = registry.expect(ids, request_io.get_executor());
  std::optional<bool> all_in;
  start_wait(request_io, r, long_wait, all_in);
  std::vector<metaserver_callback> parsed;
  for (const auto& id : ids) parsed.push_back(callback(id));
  std::atomic<int> prefilled{0};
  auto guard_a = net::make_work_guard(a_io);
  auto guard_b = net::make_work_guard(b_io);
  std::thread ta([&] { a_io.run(); });
  std::thread tb([&] { b_io.run(); });
  for (int i = 0; i < prompts; ++i) {
    net::io_context& io = i % 2 == 0 ? a_io : b_io;
    net::post(io, [&, i] {
      // No Catch2 assertion off the main thread: it is not thread-safe.
      auto d = registry.deliver(parsed[i], io.get_executor());
      if (d.how != result::accepted) return;
      net::co_spawn(io, metaserver_registry::answer_of(d.answer),
                    [&](std::exception_ptr, outcome o) {
                      if (o == outcome::prefilled) ++prefilled;
                    });
    });
  }
  // The request's thread: the wait ends only when all have called.
  request_io.run_one();
  while (!all_in) request_io.run_one();
  CHECK(*all_in);
  CHECK(r.take_callbacks().size() == prompts);
  r.finish(outcome::prefilled);
  guard_a.reset();
  guard_b.reset();
  ta.join();
  tb.join();
  CHECK(prefilled == prompts);
}

TEST_CASE("metaserver_registry: once closed, an ending request posts nothing", "[metaserver]") {
  // At shutdown the workers' io_contexts go one after the other: a request frame destroyed with
  // the second must not post to the first.
  net::io_context request_io;
  metaserver_registry registry;
  std::shared_ptr<metaserver_registry::reply> answer;
  {
    auto r = registry.expect({"cmpl-s-0"}, request_io.get_executor());
    net::io_context callback_io;
    auto d = registry.deliver(callback("cmpl-s-0"), callback_io.get_executor());
    REQUIRE(d.how == result::accepted);
    answer = d.answer;
    registry.close();
  }  // callback_io goes first (declared later), then r ends
  CHECK_FALSE(answer->answer);
  CHECK(registry.registered() == 0);
}

TEST_CASE("metaserver_registry: a restart expects new ids and drops the old callbacks",
          "[metaserver]") {
  net::io_context io;
  metaserver_registry registry;
  auto r = registry.expect({"cmpl-a-0", "cmpl-a-1"}, io.get_executor());
  std::optional<bool> all_in;
  start_wait(io, r, long_wait, all_in);
  auto old = registry.deliver(callback("cmpl-a-0"), io.get_executor());
  REQUIRE(old.how == result::accepted);
  std::optional<outcome> old_answer;
  start_answer(io, old.answer, old_answer);
  settle(io);

  // The decoder failed; the retry's decoder reports other ids.
  CHECK_FALSE(r.restart({"cmpl-a-1"}));  // already registered (by this very request): refused
  REQUIRE(r.restart({"cmpl-b-0", "cmpl-b-1"}));
  settle(io);
  CHECK(old_answer == outcome::prefill_failed);  // its decoder failed: no prefill for it
  CHECK(registry.registered() == 2);
  CHECK(registry.deliver(callback("cmpl-a-1"), io.get_executor()).how == result::unknown);
  CHECK_FALSE(all_in);  // the wait goes on

  REQUIRE(registry.deliver(callback("cmpl-b-1"), io.get_executor()).how == result::accepted);
  REQUIRE(registry.deliver(callback("cmpl-b-0"), io.get_executor()).how == result::accepted);
  settle(io);
  REQUIRE(all_in);
  CHECK(*all_in);
  auto got = r.take_callbacks();
  REQUIRE(got.size() == 2);
  CHECK(got[0].request_id == "cmpl-b-0");
  CHECK(got[1].request_id == "cmpl-b-1");
}

TEST_CASE("metaserver_registry: a wake-up whose set was restarted is waited out", "[metaserver]") {
  net::io_context io;
  metaserver_registry registry;
  auto r = registry.expect({"cmpl-w-0"}, io.get_executor());
  std::optional<bool> all_in;
  start_wait(io, r, long_wait, all_in);
  settle(io);
  // The last callback posts the wake-up; before it runs, the decode is retried elsewhere.
  REQUIRE(registry.deliver(callback("cmpl-w-0"), io.get_executor()).how == result::accepted);
  REQUIRE(r.restart({"cmpl-v-0"}));
  settle(io);
  CHECK_FALSE(all_in);  // not ended as a timeout: still waiting for the new decoder
  REQUIRE(registry.deliver(callback("cmpl-v-0"), io.get_executor()).how == result::accepted);
  settle(io);
  REQUIRE(all_in);
  CHECK(*all_in);
}
