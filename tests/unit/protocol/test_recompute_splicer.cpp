#include <simdjson.h>

#include <catch2/catch.hpp>
#include <optional>
#include <string>

#include "protocol/recompute_splicer.hpp"
#include "protocol/request_splicer.hpp"

using glm::protocol::client_request;
using glm::protocol::recompute_splicer;
using glm::protocol::request_splicer;

namespace {

std::optional<std::string> recompute(std::string body, std::string_view generated,
                                     std::int64_t max_tokens) {
  client_request req;
  auto error = request_splicer::parse(body, req);
  REQUIRE_FALSE(error);
  auto out = recompute_splicer::body(req, generated, max_tokens);
  if (out) {
    // The new body is a request the proxy itself accepts.
    std::string copy = *out;
    client_request again;
    CHECK_FALSE(request_splicer::parse(copy, again));
    CHECK(again.max_tokens == max_tokens);
  }
  return out;
}

// The decoded value of a member, through simdjson's DOM parser.
std::string decoded_string(const std::string& doc, std::string_view pointer) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(doc).get(root)) return "<invalid>";
  std::string_view s;
  if (root.at_pointer(pointer).get(s)) return "<absent>";
  return std::string(s);
}

}  // namespace

TEST_CASE("completions: the generated text ends the prompt", "[recompute]") {
  SECTION("prompt and max_tokens move to the end, the rest stays verbatim") {
    CHECK(recompute(R"({"model":"m","prompt":"Hello","max_tokens":16,"stream":true,"n":1})", " wor",
                    12) ==
          R"({"model":"m","stream":true,"n":1,"prompt":"Hello wor","max_tokens":12})");
  }
  SECTION("max_tokens is added when the client relied on the default") {
    CHECK(recompute(R"({"prompt":"a"})", "b", 15) == R"({"prompt":"ab","max_tokens":15})");
  }
  SECTION("max_completion_tokens gets the same figure when the client sent it") {
    CHECK(recompute(R"({"prompt":"a","max_completion_tokens":9,"top_p":1})", "b", 7) ==
          R"({"top_p":1,"prompt":"ab","max_tokens":7,"max_completion_tokens":7})");
  }
  SECTION("escaped text is spliced as it is") {
    auto out = recompute(R"({"prompt":"caf\u00e9 \"q\"\n","max_tokens":4})", R"(\"x\"\u00e9\\)", 2);
    REQUIRE(out);
    CHECK(*out == R"({"prompt":"caf\u00e9 \"q\"\n\"x\"\u00e9\\","max_tokens":2})");
    CHECK(decoded_string(*out, "/prompt") == "caf\xc3\xa9 \"q\"\n\"x\"\xc3\xa9\\");
  }
  SECTION("nothing generated yet") {
    CHECK(recompute(R"({"prompt":"a","max_tokens":3})", "", 2) ==
          R"({"prompt":"a","max_tokens":2})");
  }
  SECTION("whitespace inside kept members is kept") {
    CHECK(recompute("{ \"model\" : \"m\" ,\n \"prompt\" : \"p\" , \"max_tokens\" : 5 }\n", "q",
                    4) == R"({"model" : "m","prompt":"pq","max_tokens":4})");
  }
  SECTION("duplicates: the last prompt is the one extended, all copies go") {
    CHECK(recompute(R"({"prompt":"old","max_tokens":1,"prompt":"new","max_tokens":8})", "+", 5) ==
          R"({"prompt":"new+","max_tokens":5})");
  }
  SECTION("keys spelled with escapes are recognised") {
    CHECK(recompute(R"({"pr\u006fmpt":"a","max_t\u006fkens":3})", "b", 2) ==
          R"({"prompt":"ab","max_tokens":2})");
  }
  SECTION("a prompt that is not one string cannot be extended") {
    CHECK_FALSE(recompute(R"({"prompt":[1,2,3],"max_tokens":3})", "b", 2));
    CHECK_FALSE(recompute(R"({"prompt":["a","b"],"max_tokens":3})", "b", 2));
    CHECK_FALSE(recompute(R"({"prompt":null})", "b", 2));
    CHECK_FALSE(recompute(R"({"prompt":"a","prompt":[1]})", "b", 2));
  }
  SECTION("a large prompt") {
    const std::string prompt(1 << 20, 'p');
    auto out = recompute(R"({"prompt":")" + prompt + R"(","max_tokens":100})", "gen", 90);
    REQUIRE(out);
    CHECK(*out == R"({"prompt":")" + prompt + R"(gen","max_tokens":90})");
  }
}

TEST_CASE("chat: the generated text ends the last user message", "[recompute]") {
  SECTION("one user message") {
    CHECK(recompute(R"({"model":"m","messages":[{"role":"user","content":"Hi"}],"max_tokens":16})",
                    " there", 10) ==
          R"({"model":"m","messages":[{"role":"user","content":"Hi there"}],"max_tokens":10})");
  }
  SECTION("the last user message, not the first, and the rest of the array verbatim") {
    const std::string before =
        R"({"messages":[ {"role":"system","content":"sys"},)"
        "\n"
        R"({"role":"user","content":"first"}, {"role":"assistant","content":"reply"},)"
        R"( {"content":"second","name":"u","role":"user"} , {"role":"assistant","content":""} ],)"
        R"("max_completion_tokens":50,"stream":true})";
    auto out = recompute(before, "GEN", 30);
    REQUIRE(out);
    CHECK(*out ==
          R"({"stream":true,"messages":[ {"role":"system","content":"sys"},)"
          "\n"
          R"({"role":"user","content":"first"}, {"role":"assistant","content":"reply"},)"
          R"( {"content":"secondGEN","name":"u","role":"user"} , )"
          R"({"role":"assistant","content":""} ],"max_tokens":30,"max_completion_tokens":30})");
    CHECK(decoded_string(*out, "/messages/1/content") == "first");
    CHECK(decoded_string(*out, "/messages/3/content") == "secondGEN");
  }
  SECTION("strings with brackets, quotes and role-like text do not confuse the scan") {
    const std::string body =
        R"({"messages":[{"role":"user","content":"a \"role\":\"user\" ]} {["},)"
        R"({"role":"assistant","content":"x","tool_calls":[{"function":{"arguments":)"
        R"("{\"role\":\"user\",\"content\":\"no\"}"}}],"extra":{"role":"user","content":"no"}}],)"
        R"("max_tokens":5})";
    auto out = recompute(body, "!", 4);
    REQUIRE(out);
    CHECK(decoded_string(*out, "/messages/0/content") == R"(a "role":"user" ]} {[!)");
    CHECK(decoded_string(*out, "/messages/1/content") == "x");
  }
  SECTION("role written with escapes; duplicate keys count by the last one") {
    CHECK(decoded_string(*recompute(R"({"messages":[{"role":"us\u0065r","content":"a"}]})", "b", 1),
                         "/messages/0/content") == "ab");
    CHECK(recompute(R"({"messages":[{"role":"user","content":"a","content":"c"}]})", "b", 1) ==
          R"({"messages":[{"role":"user","content":"a","content":"cb"}],"max_tokens":1})");
    CHECK_FALSE(
        recompute(R"({"messages":[{"role":"user","role":"system","content":"a"}]})", "b", 1));
  }
  SECTION("numbers, literals and nested values inside messages") {
    auto out = recompute(
        R"({"messages":[{"role":"user","content":"a","n":-1.5e3,"ok":true,"v":null,)"
        R"("o":{"k":[1,{"role":"assistant"}]}},1,"s",null,[{"role":"user"}]],"max_tokens":2})",
        "b", 1);
    REQUIRE(out);
    CHECK(decoded_string(*out, "/messages/0/content") == "ab");
  }
  SECTION("whitespace everywhere inside the array") {
    auto out = recompute(
        "{\"messages\" : [ \n { \"role\" : \"user\" , \"content\" : \"a\" } \n ] , "
        "\"max_tokens\":2}",
        "b", 1);
    CHECK(out ==
          "{\"messages\":[ \n { \"role\" : \"user\" , \"content\" : \"ab\" } \n ],"
          "\"max_tokens\":1}");
  }
  SECTION("no place to append to") {
    // The last user message has a list of parts (multimodal).
    CHECK_FALSE(recompute(R"({"messages":[{"role":"user","content":"a"},{"role":"user","content":)"
                          R"([{"type":"text","text":"b"}]}]})",
                          "x", 1));
    CHECK_FALSE(recompute(R"({"messages":[{"role":"user","content":null}]})", "x", 1));
    CHECK_FALSE(recompute(R"({"messages":[{"role":"user"}]})", "x", 1));
    CHECK_FALSE(recompute(R"({"messages":[{"role":"system","content":"s"}]})", "x", 1));
    CHECK_FALSE(recompute(R"({"messages":[]})", "x", 1));
    CHECK_FALSE(recompute(R"({"messages":"hi"})", "x", 1));
    CHECK_FALSE(recompute(R"({"messages":{"role":"user","content":"a"}})", "x", 1));
  }
}

TEST_CASE("a body with a prompt is a completion request", "[recompute]") {
  CHECK(recompute(R"({"messages":[{"role":"user","content":"m"}],"prompt":"p"})", "x", 1) ==
        R"({"messages":[{"role":"user","content":"m"}],"prompt":"px","max_tokens":1})");
}

TEST_CASE("the new body is built in one allocation", "[recompute]") {
  std::string body = R"({"model":"m","prompt":")" + std::string(5000, 'p') +
                     R"(","max_tokens":16,"max_completion_tokens":16,"n":1})";
  client_request req;
  REQUIRE_FALSE(request_splicer::parse(body, req));
  auto out = recompute_splicer::body(req, "generated", 123456789);
  REQUIRE(out);
  // The reserve was exact: one more byte would have made it grow.
  CHECK(out->capacity() - out->size() < 64);
}

TEST_CASE("a messages value that is not valid JSON ends the scan all the same", "[recompute]") {
  // parse() never lets such a body through; a hand-made client_request must still not hang or
  // read out of bounds.
  for (std::string body : {R"({"messages":[})", R"({"messages":[{"role":"user","content":"a)",
                           R"({"messages":[{"role")", R"({"messages":[{:}])",
                           R"({"messages":[{"role":"user","content":"a\)", R"({"messages":[[[)",
                           R"({"messages":[,,]}]})"}) {
    client_request req;
    req.body = body;
    const std::size_t value_begin = body.find('[');
    req.members.push_back({"messages", 1, body.size(), value_begin});
    req.has_messages = true;
    auto out = recompute_splicer::body(req, "x", 1);
    if (out) CHECK(out->size() > body.size());
  }
}
