#include <catch2/catch.hpp>
#include <string>

#include "protocol/metaserver_callback.hpp"

using glm::protocol::metaserver_callback;

namespace {

// The body the Mooncake layerwise connector posts (httpx json=: ", " and ": " separators).
const std::string connector_body =
    R"({"token_ids": [], "request_id": "cmpl-abc-0", "do_remote_prefill": false, )"
    R"("do_remote_decode": true, "remote_block_ids": [[3, 4, 5]], "remote_block_size": [128], )"
    R"("remote_engine_id": "0", "remote_host": "10.0.0.3", "remote_port": 30000, )"
    R"("remote_tp_size": 8, "remote_pcp_size": 1, "remote_dcp_size": 1, )"
    R"("remote_cached_tokens": 0})";

std::optional<std::string> parse(std::string body, metaserver_callback& out) {
  return metaserver_callback::parse(body, out);
}

std::string member_text(const metaserver_callback& c, std::size_t i) {
  const auto& m = c.members.at(i);
  return c.params.substr(m.begin, m.end - m.begin);
}

}  // namespace

TEST_CASE("a connector callback keeps its bytes and yields its request_id", "[metaserver]") {
  metaserver_callback c;
  REQUIRE_FALSE(parse(connector_body, c));
  CHECK(c.request_id == "cmpl-abc-0");
  CHECK(c.request_id_json == "\"cmpl-abc-0\"");
  CHECK(c.params == connector_body);
  REQUIRE(c.members.size() == 13);
  CHECK(member_text(c, 0) == R"("token_ids": [])");
  CHECK(member_text(c, 4) == R"("remote_block_ids": [[3, 4, 5]])");
  CHECK(member_text(c, 12) == R"("remote_cached_tokens": 0)");
  for (const auto& m : c.members) CHECK_FALSE(m.batch_key);
}

TEST_CASE("whitespace around the object is not part of the params", "[metaserver]") {
  metaserver_callback c;
  REQUIRE_FALSE(parse(" \r\n\t{ \"request_id\" : \"chatcmpl-x\" , \"a\" :1 }\n ", c));
  CHECK(c.params == "{ \"request_id\" : \"chatcmpl-x\" , \"a\" :1 }");
  CHECK(c.request_id == "chatcmpl-x");
  REQUIRE(c.members.size() == 2);
  CHECK(member_text(c, 0) == "\"request_id\" : \"chatcmpl-x\"");
  CHECK(member_text(c, 1) == "\"a\" :1");
}

TEST_CASE("request_id is unescaped for lookup and kept raw for splicing", "[metaserver]") {
  metaserver_callback c;
  REQUIRE_FALSE(parse(R"({"request_\u0069d":"cmpl-\u0041\/b-0"})", c));
  CHECK(c.request_id == "cmpl-A/b-0");
  CHECK(c.request_id_json == R"("cmpl-\u0041\/b-0")");
  REQUIRE_FALSE(parse(R"({"request_id":"caf\u00e9"})", c));
  CHECK(c.request_id == "caf\xc3\xa9");
}

TEST_CASE("a duplicate request_id counts by its last occurrence", "[metaserver]") {
  metaserver_callback c;
  REQUIRE_FALSE(parse(R"({"request_id":"a","request_id":"b"})", c));
  CHECK(c.request_id == "b");
  CHECK(c.members.size() == 2);
  REQUIRE_FALSE(parse(R"({"request_id":1,"request_id":"b"})", c));
  CHECK(c.request_id == "b");
  auto error = parse(R"({"request_id":"a","request_id":null})", c);
  REQUIRE(error);
  CHECK(*error == R"("request_id" must be a string)");
}

TEST_CASE("a batch member is marked so a batched prefill can replace it", "[metaserver]") {
  metaserver_callback c;
  REQUIRE_FALSE(parse(R"({"request_id":"a","batch_kv_transfer_params":{"x":{}},"z":0})", c));
  REQUIRE(c.members.size() == 3);
  CHECK_FALSE(c.members[0].batch_key);
  CHECK(c.members[1].batch_key);
  CHECK_FALSE(c.members[2].batch_key);
}

TEST_CASE("bad callbacks get a message and leave the result empty", "[metaserver]") {
  metaserver_callback c;
  c.request_id = "stale";
  auto check = [&](std::string body, std::string_view expected) {
    auto error = parse(std::move(body), c);
    REQUIRE(error);
    CHECK(*error == expected);
    CHECK(c.request_id.empty());
    CHECK(c.params.empty());
    CHECK(c.members.empty());
  };
  check("", "metaserver request body is empty; expected a JSON object");
  check("   ", "metaserver request body is empty; expected a JSON object");
  check(R"(["request_id"])", "metaserver request body is not a JSON object");
  check(R"("cmpl-x-0")", "metaserver request body is not a JSON object");
  check(R"({"request_id":"a"} {})", "metaserver request body has data after the JSON object");
  check("{}", R"(metaserver request body has no "request_id")");
  check(R"({"requestid":"a","data":{"request_id":"b"}})",
        R"(metaserver request body has no "request_id")");
  check(R"({"request_id":7})", R"("request_id" must be a string)");
  check(R"({"request_id":["a"]})", R"("request_id" must be a string)");
  check(R"({"request_id":{"a":1}})", R"("request_id" must be a string)");
}

TEST_CASE("malformed JSON is refused wherever it is", "[metaserver]") {
  metaserver_callback c;
  for (std::string body : {
           R"({"request_id":"a")",            // unclosed
           R"({"request_id":"a",})",          // trailing comma
           R"({"request_id":"a\q"})",         // bad escape in the id
           R"({"request_id":"a","x":"\q"})",  // bad escape elsewhere
           R"({"request_id":"a","x":[1,]})",
           R"({"request_id":"a","x":01})",
           R"({"request_id":"\ud800"})",  // a lone surrogate cannot be unescaped to UTF-8
           "{\"request_id\":\"a\x01\"}",
       }) {
    INFO(body);
    auto error = parse(body, c);
    REQUIRE(error);
    CHECK(error->rfind("metaserver request body is not valid JSON", 0) == 0);
    CHECK(c.params.empty());
  }
}

TEST_CASE("every one-byte body is refused without crashing", "[metaserver]") {
  metaserver_callback c;
  // Read as the literal null by simdjson's type probe; refused either way.
  CHECK(parse("not json", c));
  for (int b = 0; b < 256; ++b) {
    CHECK(parse(std::string(1, static_cast<char>(b)), c));
  }
}

TEST_CASE("every prefix of a valid callback but the whole is refused", "[metaserver]") {
  metaserver_callback c;
  for (std::size_t n = 0; n < connector_body.size(); ++n) {
    INFO(n);
    CHECK(parse(connector_body.substr(0, n), c));
  }
  CHECK_FALSE(parse(connector_body, c));
}
