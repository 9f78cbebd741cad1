#include <simdjson.h>

#include <catch2/catch.hpp>
#include <optional>
#include <string>

#include "protocol/json_scan.hpp"
#include "protocol/response_rewriter.hpp"

using glm::protocol::response_rewriter;

namespace {

bool is_valid_json(const std::string& s) {
  simdjson::dom::parser parser;
  simdjson::dom::element element;
  return parser.parse(s).get(element) == simdjson::SUCCESS;
}

std::optional<std::string> cached(const std::string& json, std::int64_t n = 7) {
  return response_rewriter::with_cached_tokens(json, n);
}

std::string choice_text(const std::string& json) {
  std::string out;
  response_rewriter::append_choice_text(json, out);
  return out;
}

// vLLM's usage as it appears in a non-stream body and in a stream's usage-only chunk.
const std::string head = R"({"id":"cmpl-7d3e","object":"text_completion","model":"qwen",)"
                         R"("choices":[{"index":0,"text":" I","finish_reason":"length"}],)";

}  // namespace

TEST_CASE("with_cached_tokens writes usage.prompt_tokens_details.cached_tokens", "[rewriter]") {
  SECTION("an existing cached_tokens is replaced") {
    auto out =
        cached(head + R"("usage":{"prompt_tokens":9,"total_tokens":10,"completion_tokens":1,)"
                      R"("prompt_tokens_details":{"cached_tokens":0}}})");
    REQUIRE(out);
    CHECK(*out == head + R"("usage":{"prompt_tokens":9,"total_tokens":10,"completion_tokens":1,)"
                         R"("prompt_tokens_details":{"cached_tokens":7}}})");
  }
  SECTION("a details object without cached_tokens gets it first") {
    auto out = cached(head + R"("usage":{"prompt_tokens_details":{"audio_tokens":2}}})");
    REQUIRE(out);
    CHECK(*out ==
          head + R"("usage":{"prompt_tokens_details":{"cached_tokens":7,"audio_tokens":2}}})");
  }
  SECTION("an empty details object") {
    CHECK(cached(head + R"("usage":{"prompt_tokens_details":{}}})") ==
          head + R"("usage":{"prompt_tokens_details":{"cached_tokens":7}}})");
    CHECK(cached(head + R"("usage":{"prompt_tokens_details":{ }}})") ==
          head + R"("usage":{"prompt_tokens_details":{"cached_tokens":7 }}})");
  }
  SECTION("null details become an object") {
    CHECK(cached(head + R"("usage":{"prompt_tokens":9,"prompt_tokens_details":null}})") ==
          head + R"("usage":{"prompt_tokens":9,"prompt_tokens_details":{"cached_tokens":7}}})");
  }
  SECTION("absent details are created") {
    CHECK(cached(head + R"("usage":{"prompt_tokens":9,"total_tokens":10}})") ==
          head + R"("usage":{"prompt_tokens_details":{"cached_tokens":7},"prompt_tokens":9,)"
                 R"("total_tokens":10}})");
    CHECK(cached(R"({"usage":{}})") ==
          R"({"usage":{"prompt_tokens_details":{"cached_tokens":7}}})");
  }
  SECTION("the value written is the figure given") {
    const std::string body = R"({"usage":{"prompt_tokens_details":{"cached_tokens":123}}})";
    CHECK(cached(body, 0) == R"({"usage":{"prompt_tokens_details":{"cached_tokens":0}}})");
    CHECK(cached(body, 4096) == R"({"usage":{"prompt_tokens_details":{"cached_tokens":4096}}})");
  }
  SECTION("a stream's usage-only chunk") {
    const std::string chunk =
        R"({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",)"
        R"("choices":[],"usage":{"prompt_tokens":5,"total_tokens":9,"completion_tokens":4,)"
        R"("prompt_tokens_details":{"cached_tokens":5}}})";
    auto out = cached(chunk, 0);
    REQUIRE(out);
    CHECK(*out ==
          R"({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",)"
          R"("choices":[],"usage":{"prompt_tokens":5,"total_tokens":9,"completion_tokens":4,)"
          R"("prompt_tokens_details":{"cached_tokens":0}}})");
  }
}

TEST_CASE("with_cached_tokens leaves every other byte as it was", "[rewriter]") {
  SECTION("whitespace, escapes and member order") {
    const std::string body =
        "{ \"text\" : \"caf\\u00e9 \\\"q\\\"\" ,\n  \"usage\" : {\r\n \"prompt_tokens\" : 3 ,"
        " \"prompt_tokens_details\" : { \"cached_tokens\" : 1 , \"x\" : [1, 2] } } ,\n"
        "  \"tail\" : null }\n";
    auto out = cached(body, 42);
    REQUIRE(out);
    std::string expected = body;
    expected.replace(expected.find("1 , \"x\""), 1, "42");
    CHECK(*out == expected);
    CHECK(is_valid_json(*out));
  }
  SECTION("a later duplicate wins, as in a JSON parser") {
    CHECK(cached(R"({"usage":{"prompt_tokens_details":{"cached_tokens":1,"cached_tokens":2}}})") ==
          R"({"usage":{"prompt_tokens_details":{"cached_tokens":1,"cached_tokens":7}}})");
    CHECK(cached(R"({"usage":null,"usage":{}})") ==
          R"({"usage":null,"usage":{"prompt_tokens_details":{"cached_tokens":7}}})");
    CHECK_FALSE(cached(R"({"usage":{},"usage":null})"));
    CHECK(cached(R"({"usage":{"prompt_tokens_details":{"cached_tokens":1},)"
                 R"("prompt_tokens_details":null}})") ==
          R"({"usage":{"prompt_tokens_details":{"cached_tokens":1},)"
          R"("prompt_tokens_details":{"cached_tokens":7}}})");
    CHECK(cached(R"({"usage":{"prompt_tokens_details":null,"prompt_tokens_details":{"a":1}}})") ==
          R"({"usage":{"prompt_tokens_details":null,)"
          R"("prompt_tokens_details":{"cached_tokens":7,"a":1}}})");
  }
  SECTION("a large body") {
    std::string text(100000, 'a');
    const std::string body = R"({"choices":[{"text":")" + text + R"("}],"usage":{}})";
    auto out = cached(body);
    REQUIRE(out);
    CHECK(*out == R"({"choices":[{"text":")" + text +
                      R"("}],"usage":{"prompt_tokens_details":{"cached_tokens":7}}})");
  }
}

TEST_CASE("with_cached_tokens looks past a null usage only when every usage key is null",
          "[rewriter]") {
  // The shortcut for vLLM's "usage":null token chunks must not hide a usage object elsewhere.
  CHECK_FALSE(cached(R"({"usage" :  null ,"choices":[]})"));
  CHECK_FALSE(cached(R"({"choices":[{"usage":null}],"usage":null})"));
  CHECK(cached(R"({"choices":[{"usage":null}],"usage":{}})") ==
        R"({"choices":[{"usage":null}],"usage":{"prompt_tokens_details":{"cached_tokens":7}}})");
  // "usage" as a string value, or escaped inside a string, is no key.
  CHECK(cached(R"({"a":"usage","usage":{}})") ==
        R"({"a":"usage","usage":{"prompt_tokens_details":{"cached_tokens":7}}})");
  CHECK(cached(R"({"t":"\"usage\":null","usage":{}})") ==
        R"({"t":"\"usage\":null","usage":{"prompt_tokens_details":{"cached_tokens":7}}})");
  CHECK(cached(R"({"usage":nullx})") == std::nullopt);  // not JSON: left as it is
}

TEST_CASE("with_cached_tokens has nothing to fix", "[rewriter]") {
  CHECK_FALSE(cached(head + R"("usage":null})"));
  CHECK_FALSE(cached(R"({"id":"x","choices":[{"text":"a"}]})"));
  CHECK_FALSE(cached(R"({"usage":5})"));
  CHECK_FALSE(cached(R"({"usage":[]})"));
  CHECK_FALSE(cached(R"({"usage":"x"})"));
  CHECK_FALSE(cached(R"({"choices":[{"usage":{}}]})"));  // not the top-level usage
  CHECK_FALSE(cached(R"([{"usage":{}}])"));
  CHECK_FALSE(cached(R"({"usage":{}} x)"));
  CHECK_FALSE(cached(R"({"usage":{})"));
  CHECK_FALSE(cached(R"({"usage":{"prompt_tokens":01}})"));
  CHECK_FALSE(cached(""));
  CHECK_FALSE(cached("[DONE]"));
  CHECK_FALSE(cached("not json"));
}

TEST_CASE("event_data is the payload of the data line", "[rewriter]") {
  CHECK(response_rewriter::event_data("data: {\"a\":1}\n\n") == "{\"a\":1}");
  CHECK(response_rewriter::event_data("data:{\"a\":1}\n\n") == "{\"a\":1}");
  CHECK(response_rewriter::event_data("data:  x\n\n") == " x");  // one space is removed
  CHECK(response_rewriter::event_data("data: x\r\n\r\n") == "x");
  CHECK(response_rewriter::event_data("event: e\r\nid: 1\r\ndata: x\r\n\r\n") == "x");
  CHECK(response_rewriter::event_data("\n\ndata: [DONE]\n\n") == "[DONE]");
  CHECK(response_rewriter::event_data("data: x") == "x");
  CHECK(response_rewriter::event_data(": ping\n\n").empty());
  CHECK(response_rewriter::event_data(": data: x\n\n").empty());
  CHECK(response_rewriter::event_data("event: data\n\n").empty());
  CHECK(response_rewriter::event_data("").empty());
  CHECK(response_rewriter::event_data("data:\n\n").empty());
  const std::string event = "data: abc\n\n";
  CHECK(response_rewriter::event_data(event).data() == event.data() + 6);
}

TEST_CASE("event_with_cached_tokens rewrites the data line only", "[rewriter]") {
  const std::string usage = R"({"choices":[],"usage":{"prompt_tokens_details":null}})";
  const std::string fixed =
      R"({"choices":[],"usage":{"prompt_tokens_details":{"cached_tokens":3}}})";
  CHECK(response_rewriter::event_with_cached_tokens("data: " + usage + "\n\n", 3) ==
        "data: " + fixed + "\n\n");
  CHECK(response_rewriter::event_with_cached_tokens("data:" + usage + "\n\n", 3) ==
        "data:" + fixed + "\n\n");
  CHECK(response_rewriter::event_with_cached_tokens("data: " + usage + "\r\n\r\n", 3) ==
        "data: " + fixed + "\r\n\r\n");
  CHECK(response_rewriter::event_with_cached_tokens("\nid: 4\ndata: " + usage + "\n\n", 3) ==
        "\nid: 4\ndata: " + fixed + "\n\n");
  CHECK_FALSE(response_rewriter::event_with_cached_tokens("data: [DONE]\n\n", 3));
  CHECK_FALSE(response_rewriter::event_with_cached_tokens(": ping\n\n", 3));
  CHECK_FALSE(response_rewriter::event_with_cached_tokens("\n\n", 3));
  CHECK_FALSE(
      response_rewriter::event_with_cached_tokens(R"(data: {"choices":[{"text":"a"}],"usage":null})"
                                                  "\n\n",
                                                  3));
  CHECK_FALSE(response_rewriter::event_with_cached_tokens("data: {\"usage\":{}\n\n", 3));
}

TEST_CASE("is_recomputed finds a choice stopped with reason recomputed", "[rewriter]") {
  SECTION("completions and chat chunks") {
    CHECK(response_rewriter::is_recomputed(
        R"({"id":"cmpl-1","object":"text_completion","created":1,"model":"m",)"
        R"("choices":[{"index":0,"text":"","logprobs":null,"finish_reason":"stop",)"
        R"("stop_reason":"recomputed"}],"usage":null})"));
    CHECK(response_rewriter::is_recomputed(
        R"({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",)"
        R"("choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop",)"
        R"("stop_reason":"recomputed"}]})"));
    CHECK(response_rewriter::is_recomputed(
        R"({"choices":[{"index":0,"text":"a"},{"index":1,"stop_reason":"recomputed"}]})"));
    CHECK(response_rewriter::is_recomputed(
        R"({ "choices" : [ { "stop_reason" : "recomputed" } ] })"));
    CHECK(response_rewriter::is_recomputed(R"({"choices":[{"stop_reason":"recomput\u0065d"}]})"));
  }
  SECTION("anything else is not") {
    CHECK_FALSE(response_rewriter::is_recomputed(
        R"({"choices":[{"index":0,"text":"","finish_reason":"stop","stop_reason":null}]})"));
    CHECK_FALSE(response_rewriter::is_recomputed(
        R"({"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]})"));
    CHECK_FALSE(response_rewriter::is_recomputed(R"({"choices":[{"stop_reason":"stop"}]})"));
    CHECK_FALSE(response_rewriter::is_recomputed(R"({"choices":[{"stop_reason":42}]})"));
    CHECK_FALSE(
        response_rewriter::is_recomputed(R"({"choices":[{"text":"stop_reason\":\"recomputed"}]})"));
    CHECK_FALSE(response_rewriter::is_recomputed(
        R"({"choices":[{"delta":{"stop_reason":"recomputed"}}]})"));
    CHECK_FALSE(response_rewriter::is_recomputed(R"({"stop_reason":"recomputed","choices":[]})"));
    CHECK_FALSE(response_rewriter::is_recomputed(R"({"choices":[]})"));
    CHECK_FALSE(response_rewriter::is_recomputed(
        R"({"choices":[{"stop_reason":"recomputed"}],"choices":[]})"));
    CHECK_FALSE(response_rewriter::is_recomputed(
        R"({"choices":[{"stop_reason":"recomputed","stop_reason":null}]})"));
    CHECK_FALSE(response_rewriter::is_recomputed(R"({"choices":["recomputed"]})"));
    CHECK_FALSE(response_rewriter::is_recomputed(R"({"choices":null})"));
    CHECK_FALSE(response_rewriter::is_recomputed(R"({"usage":{}})"));
    CHECK_FALSE(response_rewriter::is_recomputed(R"({"choices":[{"stop_reason":"recomputed"}])"));
    CHECK_FALSE(response_rewriter::is_recomputed("[DONE]"));
    CHECK_FALSE(response_rewriter::is_recomputed(""));
  }
}

TEST_CASE("append_choice_text copies choice 0's text still escaped", "[rewriter]") {
  SECTION("completions text") {
    CHECK(choice_text(R"({"id":"cmpl-1","object":"text_completion","created":1,"model":"m",)"
                      R"("choices":[{"index":0,"text":" I","logprobs":null,"finish_reason":null,)"
                      R"("stop_reason":null}],"usage":null})") == " I");
  }
  SECTION("chat delta.content") {
    CHECK(choice_text(R"({"id":"c","object":"chat.completion.chunk","created":1,"model":"m",)"
                      R"("choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,)"
                      R"("finish_reason":null}]})") == "Hi");
    CHECK(choice_text(R"({"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]})") ==
          "");
  }
  SECTION("non-stream message.content") {
    CHECK(choice_text(
              R"({"id":"c","object":"chat.completion","model":"m","choices":[{"index":0,)"
              R"("message":{"role":"assistant","reasoning_content":null,"content":"All done",)"
              R"("tool_calls":[]},"logprobs":null,"finish_reason":"stop"}]})") == "All done");
  }
  SECTION("escapes are kept raw") {
    CHECK(choice_text(R"({"choices":[{"text":"say \"hi\" caf\u00e9\\n\n"}]})") ==
          R"(say \"hi\" caf\u00e9\\n\n)");
    CHECK(choice_text(R"({"choices":[{"delta":{"content":"\\"}}]})") == R"(\\)");
    CHECK(choice_text(R"({"choices":[{"delta":{"content":"\ud83d\ude00 \/"}}]})") ==
          R"(\ud83d\ude00 \/)");
  }
  SECTION("appends to what is there") {
    std::string out = "Hello";
    response_rewriter::append_choice_text(R"({"choices":[{"text":" world"}]})", out);
    response_rewriter::append_choice_text(R"({"choices":[{"text":"!"}]})", out);
    CHECK(out == "Hello world!");
  }
  SECTION("whitespace around the members") {
    CHECK(choice_text("{ \"choices\" : [ { \"index\" : 0 , \"text\" : \"a b\" } ] }") == "a b");
  }
  SECTION("only choice 0's own text counts") {
    CHECK(choice_text(R"({"model":"text","choices":[{"index":0,"text":"abc"}]})") == "abc");
    CHECK(choice_text(R"({"model":"content","choices":[{"index":0,"delta":{"content":"d"}}]})") ==
          "d");
    CHECK(choice_text(R"({"meta":{"text":"no"},"choices":[{"index":0,"text":"yes"}]})") == "yes");
    CHECK(choice_text(R"({"choices":[{"index":0,"delta":{"reasoning_content":"think"},)"
                      R"("logprobs":{"content":[{"token":"t","logprob":0}]}}]})") == "");
    CHECK(choice_text(R"({"choices":[{"index":0,"delta":{"content":"a"},)"
                      R"("logprobs":{"content":[{"token":"a","logprob":0}]}}]})") == "a");
    CHECK(choice_text(R"({"choices":[{"index":0,"text":"first"},{"index":1,"text":"second"}]})") ==
          "first");
    CHECK(choice_text(R"({"choices":[{"index":1,"text":"other"}]})") == "");
  }
  SECTION("nothing when there is no text") {
    CHECK(choice_text(R"({"choices":[]})") == "");
    CHECK(choice_text(R"({"choices":[],"usage":{"prompt_tokens":1}})") == "");
    CHECK(choice_text(R"({"choices":[{"index":0,"delta":{}}]})") == "");
    CHECK(choice_text(R"({"choices":[{"index":0,"delta":{"content":null}}]})") == "");
    CHECK(choice_text(R"({"choices":[{"index":0,"text":null}]})") == "");
    CHECK(choice_text(R"({"choices":[{"index":0,"text":5}]})") == "");
    CHECK(choice_text(R"({"choices":[{"index":0,"delta":{"tool_calls":[{"function":)"
                      R"({"arguments":"{\"text\":\"x\"}"}}]}}]})") == "");
    CHECK(choice_text(R"({"text":"top"})") == "");
    CHECK(choice_text(R"({"choices":[{"text":"unterminated)") == "");
    CHECK(choice_text(R"({"choices":[{"text":"a"}]} trailing)") == "");
    CHECK(choice_text("[DONE]") == "");
    CHECK(choice_text("") == "");
  }
}

TEST_CASE("key_is compares a raw key by what it decodes to", "[json_scan]") {
  using glm::protocol::detail::key_is;
  CHECK(key_is("text", "text"));
  CHECK(key_is(R"(te\u0078t)", "text"));
  CHECK(key_is(R"(\u0074ext)", "text"));
  CHECK(key_is(R"(\u0074\u0065\u0078\u0074)", "text"));
  CHECK(key_is(R"(\/)", "/"));
  CHECK_FALSE(key_is("texts", "text"));
  CHECK_FALSE(key_is("tex", "text"));
  CHECK_FALSE(key_is("Text", "text"));
  CHECK_FALSE(key_is("finish_reason", "delta"));
  CHECK_FALSE(key_is(R"(te\u0078)", "text"));
  CHECK_FALSE(key_is(R"(\u0074ext\u0073)", "text"));
  CHECK_FALSE(key_is(R"(\u00e9)", "\xc3\xa9"));  // a unit outside ASCII is never a name's
  CHECK(key_is("", ""));
  CHECK_FALSE(key_is("", "a"));
  CHECK_FALSE(key_is("a", ""));
}
