#include <catch2/catch.hpp>
#include <string>

#include "protocol/prefill_result.hpp"
#include "protocol/request_splicer.hpp"

using glm::protocol::client_request;
using glm::protocol::prefill_result;
using glm::protocol::request_splicer;

namespace {

prefill_result parse_ok(std::string body) {
  prefill_result result;
  auto error = prefill_result::parse(body, result);
  INFO(body);
  REQUIRE_FALSE(error);
  return result;
}

// The reference page's example, line breaks and indentation included.
const std::string mooncake_kv =
    "{\"do_remote_prefill\":true,\"do_remote_decode\":false,\"remote_block_ids\":[[12]],\n"
    "      \"remote_engine_id\":\"0\",\"remote_request_id\":\"cmpl-7d3e-0-9f3e2a1b\","
    "\"remote_host\":\"192.0.0.1\",\n"
    "      \"remote_port\":30000,\"remote_pcp_size\":1,\"remote_dcp_size\":1,"
    "\"remote_ptp_size\":8,\"last_token_id\":358,\n"
    "      \"num_prompt_blocks\":1,\"remote_block_size\":128}";
const std::string mooncake_body =
    "{\"id\":\"cmpl-7d3e\",\"object\":\"text_completion\",\"model\":\"qwen\",\n"
    " \"choices\":[{\"index\":0,\"text\":\" I\",\"finish_reason\":\"length\","
    "\"stop_reason\":null}],\n"
    " \"usage\":{\"prompt_tokens\":9,\"total_tokens\":10,\"completion_tokens\":1,"
    "\"prompt_tokens_details\":{\"cached_tokens\":0}},\n"
    " \"kv_transfer_params\":" +
    mooncake_kv + "}";

}  // namespace

TEST_CASE("kv_transfer_params is copied verbatim", "[prefill_result]") {
  SECTION("Mooncake, from the reference page") {
    prefill_result r = parse_ok(mooncake_body);
    CHECK(r.kv_transfer_params == mooncake_kv);
    CHECK(r.cached_tokens == 0);
    CHECK(r.prompt_tokens == std::optional<std::int64_t>(9));
  }
  SECTION("NIXL") {
    const std::string kv =
        R"({"do_remote_prefill": true, "do_remote_decode": false, "remote_block_ids": [1, 2, 3],)"
        R"( "remote_engine_id": "9c1f-engine", "remote_request_id": "cmpl-abc-0",)"
        R"( "remote_host": "10.0.0.2", "remote_port": 5600, "tp_size": 4})";
    prefill_result r =
        parse_ok(R"({"kv_transfer_params": )" + kv +
                 R"( , "usage": {"prompt_tokens_details": {"cached_tokens": 128}}})");
    CHECK(r.kv_transfer_params == kv);
    CHECK(r.cached_tokens == 128);
    CHECK_FALSE(r.prompt_tokens.has_value());  // usage without prompt_tokens teaches nothing
  }
  SECTION("trailing whitespace is not part of the value") {
    CHECK(parse_ok("{\"kv_transfer_params\" :\n {\"a\":[1, 2]} \r\n\t}").kv_transfer_params ==
          R"({"a":[1, 2]})");
  }
  SECTION("escapes and unicode inside are kept as written") {
    const std::string kv = R"({"remote_host":"h\u00e9\"x","k":"é"})";
    CHECK(parse_ok(R"({"kv_transfer_params":)" + kv + "}").kv_transfer_params == kv);
  }
  SECTION("the last duplicate wins") {
    CHECK(parse_ok(R"({"kv_transfer_params":{"a":1},"kv_transfer_params":{"b":2}})")
              .kv_transfer_params == R"({"b":2})");
    CHECK(parse_ok(R"({"kv_transfer_params":{"a":1},"kv_transfer_params":null})")
              .kv_transfer_params.empty());
  }
  SECTION("a member of the same name further down is not it") {
    CHECK(parse_ok(R"({"choices":[{"kv_transfer_params":{"a":1}}]})").kv_transfer_params.empty());
  }
}

TEST_CASE("kv_transfer_params that means none is left empty", "[prefill_result]") {
  for (const char* body : {
           R"({"id":"x"})",
           R"({})",
           R"({"kv_transfer_params":null})",
           R"({"kv_transfer_params":{}})",
           R"({"kv_transfer_params": { } })",
           "{\"kv_transfer_params\":{\n\t\r }}",
           // The reference forwards it only when Python finds it truthy.
           R"({"kv_transfer_params":[]})",
           R"({"kv_transfer_params":false})",
           R"({"kv_transfer_params":""})",
           R"({"kv_transfer_params":0})",
           R"({"kv_transfer_params":-0.0e5})",
       }) {
    INFO(body);
    CHECK(parse_ok(body).kv_transfer_params.empty());
  }
  CHECK(parse_ok(R"({"kv_transfer_params":[0]})").kv_transfer_params == "[0]");
  CHECK(parse_ok(R"({"kv_transfer_params":"x"})").kv_transfer_params == R"("x")");
  CHECK(parse_ok(R"({"kv_transfer_params":0.5})").kv_transfer_params == "0.5");
  CHECK(parse_ok(R"({"kv_transfer_params":{"":null}})").kv_transfer_params == R"({"":null})");
}

TEST_CASE("cached_tokens comes from usage.prompt_tokens_details", "[prefill_result]") {
  CHECK(parse_ok(R"({"usage":{"prompt_tokens_details":{"cached_tokens":42}}})").cached_tokens ==
        42);
  CHECK(parse_ok(R"({"usage":{"prompt_tokens":9,"prompt_tokens_details":{"audio_tokens":null,)"
                 R"("cached_tokens" : 7 },"total_tokens":10}})")
            .cached_tokens == 7);
  CHECK(parse_ok(R"({"usage":{"prompt_tokens_details":{"cached_tokens":9007199254740993}}})")
            .cached_tokens == 9007199254740993);
  SECTION("0 when any part is absent or null") {
    for (const char* body : {
             R"({})",
             R"({"usage":null})",
             R"({"usage":{}})",
             R"({"usage":{"prompt_tokens":9}})",
             R"({"usage":{"prompt_tokens_details":null}})",
             R"({"usage":{"prompt_tokens_details":{}}})",
             R"({"usage":{"prompt_tokens_details":{"cached_tokens":null}}})",
             R"({"usage":{"prompt_tokens_details":{"cached_tokens":"5"}}})",
             R"({"usage":{"prompt_tokens_details":{"cached_tokens":2.5}}})",
             R"({"usage":{"prompt_tokens_details":[{"cached_tokens":5}]}})",
             R"({"usage":[{"prompt_tokens_details":{"cached_tokens":5}}]})",
             R"({"prompt_tokens_details":{"cached_tokens":5}})",
             R"({"usage":{"x":{"prompt_tokens_details":{"cached_tokens":5}}}})",
         }) {
      INFO(body);
      CHECK(parse_ok(body).cached_tokens == 0);
    }
  }
  SECTION("the last duplicate wins at each level") {
    CHECK(parse_ok(R"({"usage":{"prompt_tokens_details":{"cached_tokens":5}},"usage":{}})")
              .cached_tokens == 0);
    CHECK(parse_ok(R"({"usage":{},"usage":{"prompt_tokens_details":{"cached_tokens":5}}})")
              .cached_tokens == 5);
    CHECK(parse_ok(R"({"usage":{"prompt_tokens_details":{"cached_tokens":5},)"
                   R"("prompt_tokens_details":{"cached_tokens":6}}})")
              .cached_tokens == 6);
    CHECK(parse_ok(R"({"usage":{"prompt_tokens_details":{"cached_tokens":5,"cached_tokens":3}}})")
              .cached_tokens == 3);
    CHECK(
        parse_ok(R"({"usage":{"prompt_tokens_details":{"cached_tokens":5,"cached_tokens":null}}})")
            .cached_tokens == 0);
  }
}

TEST_CASE("prefill_result rejects a body that is not a JSON object", "[prefill_result]") {
  for (std::string body : {
           std::string(""),
           std::string("[]"),
           std::string("null"),
           std::string("Internal Server Error"),
           std::string("<html><body>502 Bad Gateway</body></html>"),
           std::string(R"({"kv_transfer_params":{"a":1})"),
           std::string(R"({"kv_transfer_params":{"a":}})"),
           std::string(R"({"usage":{"prompt_tokens_details":{"cached_tokens":01}}})"),
           std::string(R"({"id":"x"} trailing)"),
       }) {
    INFO(body);
    prefill_result result;
    result.cached_tokens = 99;
    result.kv_transfer_params = "stale";
    auto error = prefill_result::parse(body, result);
    REQUIRE(error);
    CHECK(error->rfind("prefill response ", 0) == 0);
    CHECK(result.kv_transfer_params.empty());
    CHECK(result.cached_tokens == 0);
  }
}

TEST_CASE("prefill result feeds the decode body", "[prefill_result][splicer]") {
  std::string client = R"({"model":"qwen","prompt":"Hello","max_tokens":16,"stream":true})";
  client_request req;
  REQUIRE_FALSE(request_splicer::parse(client, req));
  std::string answer = mooncake_body;
  prefill_result result;
  REQUIRE_FALSE(prefill_result::parse(answer, result));
  CHECK(request_splicer::decode_body(req, result.kv_transfer_params) ==
        R"({"model":"qwen","prompt":"Hello","max_tokens":16,"stream":true,"kv_transfer_params":)" +
            mooncake_kv + "}");
}

TEST_CASE("usage.prompt_tokens is read for cache-aware routing", "[prefill_result]") {
  CHECK(parse_ok(R"({"usage":{"prompt_tokens_details":{"cached_tokens":64},"prompt_tokens":300}})")
            .prompt_tokens == std::optional<std::int64_t>(300));
  CHECK(parse_ok(R"({"usage":{"prompt_tokens":300,"prompt_tokens_details":{"cached_tokens":64}}})")
            .cached_tokens == 64);
  CHECK_FALSE(parse_ok(R"({"usage":null})").prompt_tokens.has_value());
  CHECK_FALSE(parse_ok(R"({"usage":{"prompt_tokens":"300"}})").prompt_tokens.has_value());
  CHECK_FALSE(parse_ok(R"({"kv_transfer_params":{"a":1}})").prompt_tokens.has_value());
  // A later usage replaces an earlier one, as Python's json keeps the last duplicate.
  CHECK_FALSE(
      parse_ok(R"({"usage":{"prompt_tokens":5},"usage":{"completion_tokens":1}})").prompt_tokens);
}
