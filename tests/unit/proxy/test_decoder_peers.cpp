#include <catch2/catch.hpp>
#include <optional>

#include "balancer/balancer.hpp"
#include "proxy/front/decoder_peers.hpp"

using glm::balancer::backend_address;
using glm::balancer::balancer;
using glm::proxy::decoder_peers;
namespace net = boost::asio;

namespace {

// Runs decoder_peers::admits to completion. Only IP literals are configured here, so nothing is
// resolved and no socket is opened.
bool admits(const balancer& lb, const char* peer) {
  net::io_context io;
  std::optional<bool> out;
  net::co_spawn(io, decoder_peers::admits(lb, net::ip::make_address(peer)),
                [&](std::exception_ptr e, bool ok) {
                  REQUIRE_FALSE(e);
                  out = ok;
                });
  io.run();
  REQUIRE(out);
  return *out;
}

}  // namespace

TEST_CASE("decoder_peers admits the decoders and loopback, nobody else", "[decoder_peers]") {
  balancer lb({{"10.0.0.1", 6700}}, {{"10.0.0.5", 9000}, {"fd00::7", 9001}});
  CHECK(admits(lb, "10.0.0.5"));
  CHECK(admits(lb, "::ffff:10.0.0.5"));  // an IPv4 client of a dual-stack listener
  CHECK(admits(lb, "fd00::7"));
  CHECK(admits(lb, "127.0.0.1"));
  CHECK(admits(lb, "127.8.9.10"));
  CHECK(admits(lb, "::1"));
  CHECK_FALSE(admits(lb, "10.0.0.6"));
  CHECK_FALSE(admits(lb, "10.0.0.1"));  // a prefiller is not a decoder
  CHECK_FALSE(admits(lb, "fd00::8"));
  CHECK_FALSE(admits(lb, "192.168.1.1"));
}

TEST_CASE("decoder_peers follows the decoders the balancer knows now", "[decoder_peers]") {
  balancer lb({{"10.0.0.1", 6700}}, {{"10.0.0.5", 9000}});
  CHECK_FALSE(admits(lb, "10.0.0.9"));
  // /instances/add: pending until its probe succeeds, and admitted from then on.
  lb.add_pending(glm::balancer::role::decode, {{"10.0.0.9", 9000}});
  CHECK_FALSE(admits(lb, "10.0.0.9"));
  for (const auto& task : lb.due_probes()) lb.probe_result(task.pending_id, true);
  CHECK(admits(lb, "10.0.0.9"));
}
