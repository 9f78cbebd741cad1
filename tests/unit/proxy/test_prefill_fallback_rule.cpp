#include <catch2/catch.hpp>

#include "proxy/pd/prefill_fallback_rule.hpp"

using glm::balancer::backend_address;
using glm::balancer::role;
using glm::proxy::backend_failure;
using glm::proxy::call_result;
using glm::proxy::config;
using glm::proxy::prefill_fallback_rule;
namespace net = boost::asio;

namespace {

const backend_address prefiller{"10.0.0.1", 6700};

call_result ended(call_result::ending how) {
  call_result r;
  r.how = how;
  return r;
}

call_result failed_with(backend_failure f) {
  call_result r = ended(call_result::ending::failed);
  r.failure = std::move(f);
  return r;
}

}  // namespace

TEST_CASE("the prefill fallback applies to prefiller faults and a missing prefiller only") {
  const auto decode = config::prefill_fallback::decode;
  CHECK(prefill_fallback_rule::applies(decode, ended(call_result::ending::no_instance)));
  CHECK(prefill_fallback_rule::applies(
      decode, failed_with(backend_failure::status(role::prefill, prefiller, 503, "busy"))));
  CHECK(prefill_fallback_rule::applies(
      decode, failed_with(backend_failure::transport(
                  role::prefill, prefiller, make_error_code(net::error::connection_refused)))));
  CHECK(prefill_fallback_rule::applies(
      decode, failed_with(backend_failure::transport(
                  role::prefill, prefiller, make_error_code(boost::beast::error::timeout)))));
  CHECK(prefill_fallback_rule::applies(
      decode, failed_with(backend_failure::bad_answer(role::prefill, prefiller, "not JSON"))));

  // A 4xx is the request's own fault: the client's answer, with or without the fallback.
  CHECK_FALSE(prefill_fallback_rule::applies(
      decode, failed_with(backend_failure::status(role::prefill, prefiller, 400, "bad"))));
  CHECK_FALSE(prefill_fallback_rule::applies(
      decode, failed_with(backend_failure::status(role::prefill, prefiller, 429, "slow down"))));
  // Nothing to serve any more, or nothing went wrong.
  CHECK_FALSE(prefill_fallback_rule::applies(decode, ended(call_result::ending::client_gone)));
  CHECK_FALSE(prefill_fallback_rule::applies(decode, ended(call_result::ending::drained)));
  CHECK_FALSE(prefill_fallback_rule::applies(decode, ended(call_result::ending::answered)));

  // Off (the default): never.
  CHECK_FALSE(prefill_fallback_rule::applies(config::prefill_fallback::off,
                                             ended(call_result::ending::no_instance)));
  CHECK_FALSE(prefill_fallback_rule::applies(
      config::prefill_fallback::off,
      failed_with(backend_failure::status(role::prefill, prefiller, 503, "busy"))));
}
