#include <catch2/catch.hpp>
#include <string>

#include "proxy/core/endpoint.hpp"
#include "proxy/front/route_table.hpp"

using namespace glm::proxy;
namespace http = boost::beast::http;

TEST_CASE("every served endpoint has one route, found by its path") {
  for (endpoint e : all_endpoints) {
    const route* r = route_table::find(to_string(e));
    if (e == endpoint::other || e == endpoint::invalid) {
      CHECK(r == nullptr);
      continue;
    }
    REQUIRE(r != nullptr);
    CHECK(r->id == e);
    CHECK(endpoint_of(to_string(e)) == e);
  }
  CHECK(route_table::find("/v1/completions/") == nullptr);
  CHECK(route_table::find("/V1/completions") == nullptr);
  CHECK(endpoint_of("/nothing") == endpoint::other);
}

TEST_CASE("only completions are limited; only operations need the admin token") {
  CHECK(route_table::find("/v1/completions")->limited);
  CHECK(route_table::find("/v1/chat/completions")->limited);
  CHECK_FALSE(route_table::find("/v1/models")->limited);
  CHECK(route_table::find("/v1/models")->access == access_rule::inference);
  CHECK(route_table::find("/healthcheck")->access == access_rule::open);
  CHECK(route_table::find("/metrics")->access == access_rule::open);
  for (const char* path : {"/instances/add", "/instances/remove", "/reset_prefix_cache"}) {
    CHECK(route_table::find(path)->access == access_rule::admin);
  }
  // The layerwise callback: no token (decoders have none), the decoders' addresses instead.
  const route& metaserver = *route_table::find("/v1/metaserver");
  CHECK(metaserver.access == access_rule::decoders);
  CHECK_FALSE(metaserver.limited);
  CHECK(route_table::accepts(metaserver, http::verb::post));
  CHECK_FALSE(route_table::accepts(metaserver, http::verb::get));
}

TEST_CASE("HEAD is served wherever GET is, and nowhere else") {
  const route& health = *route_table::find("/healthcheck");
  CHECK(route_table::accepts(health, http::verb::get));
  CHECK(route_table::accepts(health, http::verb::head));
  CHECK_FALSE(route_table::accepts(health, http::verb::post));
  const route& completions = *route_table::find("/v1/completions");
  CHECK(route_table::accepts(completions, http::verb::post));
  CHECK_FALSE(route_table::accepts(completions, http::verb::head));
  CHECK_FALSE(route_table::accepts(completions, http::verb::get));
}

TEST_CASE("refusals are counted with their reason and say what is allowed") {
  auto a = route_table::method_not_allowed(*route_table::find("/metrics"), true);
  CHECK(a.response.result_int() == 405);
  CHECK(a.response[http::field::allow] == "GET, HEAD");
  REQUIRE(a.refused);
  CHECK(*a.refused == refusal_reason::method_not_allowed);
  auto p = route_table::method_not_allowed(*route_table::find("/instances/add"), true);
  CHECK(p.response[http::field::allow] == "POST");
  auto n = route_table::not_found("/x", false);
  CHECK(n.response.result_int() == 404);
  CHECK(*n.refused == refusal_reason::not_found);
  CHECK(ending_of(refusal_reason::queue_timeout) == request_ending::timeout);
  CHECK(ending_of(refusal_reason::no_instance) == request_ending::no_instance);
  CHECK(ending_of(refusal_reason::unauthorized) == request_ending::rejected);
}
