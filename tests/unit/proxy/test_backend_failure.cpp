#include <catch2/catch.hpp>
#include <string>

#include "proxy/upstream/backend_failure.hpp"

using glm::balancer::backend_address;
using glm::balancer::role;
using glm::proxy::backend_failure;
using glm::proxy::failure_kind;
using glm::proxy::request_ending;
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

const backend_address prefiller{"10.0.0.1", 6700};
const backend_address decoder{"10.0.0.3", 6800};

}  // namespace

TEST_CASE("a transport failure: kind, client status, ending and words come from one value") {
  auto refused = backend_failure::transport(role::prefill, prefiller,
                                            make_error_code(net::error::connection_refused));
  CHECK(refused.kind() == failure_kind::refused);
  CHECK(refused.client_status() == 502);
  CHECK(refused.ending() == request_ending::upstream_error);
  CHECK(refused.client_body().empty());
  CHECK(refused.client_message().starts_with("prefill instance 10.0.0.1:6700 failed: "));
  CHECK(refused.retryable());
  CHECK(refused.instance_fault());

  auto timeout = backend_failure::transport(role::decode, decoder, beast::error::timeout);
  CHECK(timeout.kind() == failure_kind::timeout);
  CHECK(timeout.client_status() == 504);
  CHECK(timeout.ending() == request_ending::timeout);
  CHECK(timeout.client_message().starts_with("decode instance 10.0.0.3:6800 timed out: "));

  CHECK(backend_failure::transport(role::decode, decoder,
                                   make_error_code(net::error::connection_reset))
            .kind() == failure_kind::reset);
  CHECK(backend_failure::transport(role::decode, decoder, http::error::end_of_stream).kind() ==
        failure_kind::reset);
  CHECK(backend_failure::transport(role::decode, decoder, http::error::bad_version).kind() ==
        failure_kind::other);
}

TEST_CASE("an error status passes on the backend's status and body") {
  auto f = backend_failure::status(role::decode, decoder, 500, "<html>boom</html>");
  CHECK(f.kind() == failure_kind::status);
  CHECK(f.client_status() == 500);
  CHECK(f.log_word() == "HTTP 500");
  CHECK(f.ending() == request_ending::upstream_error);
  // Not JSON: wrapped in a JSON error in vLLM's shape.
  CHECK(f.client_body().starts_with(R"({"error":{"message":"<html>boom</html>")"));
  CHECK(f.retryable());
  CHECK(f.instance_fault());

  auto json = backend_failure::status(role::decode, decoder, 503, R"({"error":"busy"})");
  CHECK(json.client_body() == R"({"error":"busy"})");
}

TEST_CASE("a 400 is never retried and a 4xx never ejects") {
  auto bad = backend_failure::status(role::decode, decoder, 400, R"({"error":{}})");
  CHECK_FALSE(bad.retryable());
  CHECK_FALSE(bad.instance_fault());
  auto too_many = backend_failure::status(role::prefill, prefiller, 429, "");
  CHECK(too_many.retryable());
  CHECK_FALSE(too_many.instance_fault());
}

TEST_CASE("a 2xx the proxy cannot use is a 502 bad_answer like any failure") {
  auto f = backend_failure::bad_answer(role::prefill, prefiller, "the body is not a JSON object");
  CHECK(f.kind() == failure_kind::bad_answer);
  CHECK(f.client_status() == 502);
  CHECK(f.retryable());
  CHECK(f.instance_fault());
  CHECK(f.client_message() ==
        "prefill instance 10.0.0.1:6700 answered: the body is not a JSON object");
}
