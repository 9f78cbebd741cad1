#include <catch2/catch.hpp>

#include "balancer/backend_address.hpp"

using glm::balancer::backend_address;
using glm::balancer::role;

TEST_CASE("role names match the /instances type field", "[backend_address]") {
  CHECK(glm::balancer::to_string(role::prefill) == "prefill");
  CHECK(glm::balancer::to_string(role::decode) == "decode");
}

TEST_CASE("to_string brackets IPv6 literals only", "[backend_address]") {
  CHECK(backend_address{"localhost", 8001}.to_string() == "localhost:8001");
  CHECK(backend_address{"10.0.0.7", 6700}.to_string() == "10.0.0.7:6700");
  CHECK(backend_address{"::1", 8000}.to_string() == "[::1]:8000");
  CHECK(backend_address{"fe80::1", 65535}.to_string() == "[fe80::1]:65535");
}

TEST_CASE("parse accepts host:port and [v6]:port", "[backend_address]") {
  auto a = backend_address::parse("node-3.example:9081");
  REQUIRE(a);
  CHECK(a->host == "node-3.example");
  CHECK(a->port == 9081);

  auto v4 = backend_address::parse("192.168.1.2:1");
  REQUIRE(v4);
  CHECK(v4->host == "192.168.1.2");
  CHECK(v4->port == 1);

  auto v6 = backend_address::parse("[::1]:8000");
  REQUIRE(v6);
  CHECK(v6->host == "::1");
  CHECK(v6->port == 8000);
  CHECK(v6->to_string() == "[::1]:8000");

  auto max = backend_address::parse("h:65535");
  REQUIRE(max);
  CHECK(max->port == 65535);
}

TEST_CASE("parse round-trips to_string", "[backend_address]") {
  for (const char* text : {"localhost:8001", "10.1.2.3:6800", "[2001:db8::5]:9900"}) {
    auto a = backend_address::parse(text);
    REQUIRE(a);
    CHECK(a->to_string() == text);
  }
}

TEST_CASE("parse rejects a missing, malformed or out-of-range port", "[backend_address]") {
  for (const char* text : {"",
                           "localhost",
                           "localhost:",
                           "h:0",
                           "h:70000",
                           "h:65536",
                           "h:12x",
                           "h:-1",
                           "h:+80",
                           "h: 80",
                           ":8000",
                           "[::1]",
                           "[::1]:",
                           "[::1]8000",
                           "[]:8000",
                           "[::1:8000",
                           "::1",
                           "fe80::1:8000",
                           "h:99999999999999999999",
                           "a b:80",
                           "h\r\n:80",
                           "http://h:80",
                           "user@h:80",
                           "[name]:80"}) {
    INFO("text: \"" << text << "\"");
    CHECK_FALSE(backend_address::parse(text));
  }
}

TEST_CASE("same_as treats localhost, 127.0.0.1 and 0.0.0.0 as one host", "[backend_address]") {
  const backend_address localhost{"localhost", 8001};
  CHECK(localhost.same_as({"127.0.0.1", 8001}));
  CHECK(localhost.same_as({"0.0.0.0", 8001}));
  CHECK(backend_address{"0.0.0.0", 8001}.same_as({"127.0.0.1", 8001}));
  CHECK(localhost.same_as({"LocalHost", 8001}));
  CHECK(localhost.same_as(localhost));

  CHECK_FALSE(localhost.same_as({"localhost", 8002}));
  CHECK_FALSE(localhost.same_as({"127.0.0.2", 8001}));
  CHECK_FALSE(localhost.same_as({"10.0.0.1", 8001}));
  CHECK_FALSE(backend_address{"10.0.0.1", 8001}.same_as({"10.0.0.2", 8001}));
  CHECK(backend_address{"Node1", 80}.same_as({"node1", 80}));
}
