#include <catch2/catch.hpp>

#include "proxy/front/access_policy.hpp"

using glm::proxy::access_policy;
using verdict = access_policy::verdict;
namespace ip = boost::asio::ip;

namespace {
const ip::address local = ip::make_address("127.0.0.1");
const ip::address remote = ip::make_address("192.0.2.7");
}  // namespace

TEST_CASE("is_loopback knows every loopback form", "[access_policy]") {
  CHECK(access_policy::is_loopback(ip::make_address("127.0.0.1")));
  CHECK(access_policy::is_loopback(ip::make_address("127.255.0.9")));
  CHECK(access_policy::is_loopback(ip::make_address("::1")));
  CHECK(access_policy::is_loopback(ip::make_address("::ffff:127.0.0.1")));
  CHECK(access_policy::is_loopback(ip::make_address("::ffff:127.1.2.3")));
  CHECK_FALSE(access_policy::is_loopback(ip::make_address("128.0.0.1")));
  CHECK_FALSE(access_policy::is_loopback(ip::make_address("10.0.0.1")));
  CHECK_FALSE(access_policy::is_loopback(ip::make_address("0.0.0.0")));
  CHECK_FALSE(access_policy::is_loopback(ip::make_address("::")));
  CHECK_FALSE(access_policy::is_loopback(ip::make_address("::ffff:10.0.0.1")));
  CHECK_FALSE(access_policy::is_loopback(ip::make_address("fe80::1")));
  // IPv4-compatible (deprecated, not mapped) ::127.0.0.1 is not IPv4 loopback.
  CHECK_FALSE(access_policy::is_loopback(ip::make_address("::127.0.0.1")));
}

TEST_CASE("inference endpoints are open without an API key", "[access_policy]") {
  access_policy policy("", "");
  CHECK(policy.inference("") == verdict::allowed);
  CHECK(policy.inference("Bearer anything") == verdict::allowed);
}

TEST_CASE("inference endpoints want the API key when one is set", "[access_policy]") {
  access_policy policy("sk-right", "");
  CHECK(policy.inference("Bearer sk-right") == verdict::allowed);
  CHECK(policy.inference("") == verdict::unauthorized);
  CHECK(policy.inference("Bearer sk-wrong") == verdict::unauthorized);
  CHECK(policy.inference("Bearer sk-righ") == verdict::unauthorized);
  CHECK(policy.inference("sk-right") == verdict::unauthorized);
  SECTION("the admin token is not an API key") {
    access_policy both("sk-right", "admin");
    CHECK(both.inference("Bearer admin") == verdict::unauthorized);
  }
}

TEST_CASE("admin endpoints without a token answer loopback only", "[access_policy]") {
  access_policy policy("sk-right", "");
  CHECK(policy.admin("", local) == verdict::allowed);
  CHECK(policy.admin("", ip::make_address("::1")) == verdict::allowed);
  CHECK(policy.admin("", remote) == verdict::forbidden);
  // No credentials help a remote client, not even the API key.
  CHECK(policy.admin("Bearer sk-right", remote) == verdict::forbidden);
}

TEST_CASE("admin endpoints with a token want it from everyone", "[access_policy]") {
  access_policy policy("", "admin-secret");
  CHECK(policy.admin("Bearer admin-secret", remote) == verdict::allowed);
  CHECK(policy.admin("Bearer admin-secret", local) == verdict::allowed);
  CHECK(policy.admin("", local) == verdict::unauthorized);
  CHECK(policy.admin("", remote) == verdict::unauthorized);
  CHECK(policy.admin("Bearer admin-secreT", remote) == verdict::unauthorized);
}
