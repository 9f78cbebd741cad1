#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "protocol/choice_text_scanner.hpp"
#include "protocol/response_rewriter.hpp"

using glm::protocol::choice_text_scanner;
using glm::protocol::response_rewriter;
using outcome = choice_text_scanner::outcome;

namespace {

// The fast path must agree with the general scan wherever it decides.
void agrees_with_general(const std::string& json) {
  INFO(json);
  auto fast = choice_text_scanner::scan(json);
  std::string general;
  response_rewriter::append_choice_text_general(json, general);
  if (fast.what == outcome::text) CHECK(std::string(fast.text) == general);
  if (fast.what == outcome::no_text) CHECK(general.empty());
  std::string both;
  response_rewriter::append_choice_text(json, both);
  CHECK(both == general);
}

}  // namespace

TEST_CASE("choice_text_scanner settles vLLM's chunks itself", "[choice_text_scanner]") {
  auto completion = choice_text_scanner::scan(
      R"({"id":"cmpl-1","object":"text_completion","created":1764780000,"model":"glm-5.2",)"
      R"("choices":[{"index":0,"text":" tok\"1\"","logprobs":null,"finish_reason":null,)"
      R"("stop_reason":null}],"usage":null})");
  CHECK(completion.what == outcome::text);
  CHECK(completion.text == R"( tok\"1\")");
  auto chat = choice_text_scanner::scan(
      R"({"id":"c","object":"chat.completion.chunk","choices":[{"index":0,)"
      R"("delta":{"role":"assistant","content":"你好 caf\u00e9"},"logprobs":null,)"
      R"("finish_reason":null}]})");
  CHECK(chat.what == outcome::text);
  CHECK(chat.text == R"(你好 caf\u00e9)");
  auto usage = choice_text_scanner::scan(
      R"({"id":"c","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1.5e3}})");
  CHECK(usage.what == outcome::no_text);
  CHECK(choice_text_scanner::scan("  {}\r\n").what == outcome::no_text);
}

TEST_CASE("choice_text_scanner leaves the unusual and the malformed to the general scan",
          "[choice_text_scanner]") {
  for (const char* json : {
           R"({"choices":[{"te\u0078t":"a"}]})",           // an escaped key
           R"({"choices":[{"text":"a"}]} x)",              // trailing bytes
           R"({"choices":[{"text":"a"}])",                 // cut short
           "{\"choices\":[{\"text\":\"a\tb\"}]}",          // a raw tab inside a string
           "{\"choices\":[{\"text\":\"\xff\"}]}",          // not UTF-8
           "{\"choices\":[{\"text\":\"\xc3\"}]}",          // a UTF-8 sequence cut short
           "{\"choices\":[{\"text\":\"\xed\xa0\x80\"}]}",  // a UTF-8 surrogate
           "{\"choices\":[{\"text\":\"\xc0\xaf\"}]}",      // an overlong form
           R"({"choices":[{"text":"\x"}]})",               // a bad escape
           R"({"choices":[{"text":"\u12g4"}]})",
           R"({"a":01})",
           R"({"a":1.})",
           R"({"a":-})",
           R"({"a":tru})",
           R"({"a":nul})",
           R"({"a" 1})",
           R"({"a":1,})",
           R"({"a":[1,]})",
           R"({,})",
           R"([{"choices":[{"text":"a"}]}])",
           "{\"a\":1}\f",
           "",
       }) {
    INFO(json);
    CHECK(choice_text_scanner::scan(json).what == outcome::unsure);
  }
  std::string deep = R"({"choices":[{"text":"a","x":)";
  for (int i = 0; i < choice_text_scanner::max_depth; ++i) deep += "[";
  for (int i = 0; i < choice_text_scanner::max_depth; ++i) deep += "]";
  deep += "}]}";
  CHECK(choice_text_scanner::scan(deep).what == outcome::unsure);
  agrees_with_general(deep);
}

TEST_CASE("choice_text_scanner reads choice 0 as the general scan does", "[choice_text_scanner]") {
  const std::vector<std::string> cases = {
      R"({"choices":[{"index":0,"text":" I"}]})",
      R"({"choices":[{"index":1,"text":"other"}]})",
      R"({"choices":[{"index":"0","text":"string index"}]})",
      R"({"choices":[{"index":0.0,"text":"float index"}]})",
      R"({"choices":[{"text":"first"},{"index":0,"text":"second"}]})",
      R"({"choices":[5,{"text":"second"}]})",
      R"({"choices":{"text":"not an array"}})",
      R"({"choices":[{"text":"a"}],"choices":[]})",
      R"({"choices":[],"choices":[{"text":"b"}]})",
      R"({"choices":[{"text":"a","text":"b"}]})",
      R"({"choices":[{"text":5}]})",
      R"({"choices":[{"text":null,"delta":{"content":"d"}}]})",
      R"({"choices":[{"delta":{"content":"d"},"message":{"content":"m"}}]})",
      R"({"choices":[{"message":{"content":"m"}}]})",
      R"({"choices":[{"delta":{"content":"d"},"delta":5}]})",
      R"({"choices":[{"delta":{"content":"d"},"delta":{"role":"x"}}]})",
      R"({"choices":[{"delta":{"content":"d","content":7}}]})",
      R"({"choices":[{"delta":{"reasoning_content":"think"},"logprobs":{"content":[1]}}]})",
      R"({"choices":[{"index":0,"delta":{"content":""}}]})",
      R"({"meta":{"choices":[{"text":"nested"}]},"choices":[{"text":"top"}]})",
      R"({ "choices" : [ { "index" : 0 , "text" : "a b" } ] })",
      R"({"choices":[{"text":"esc \\ \/ \b \f \n \r \t \u0041"}],"n":-1.25E-3,"t":true,"f":false})",
      "{\"choices\":[{\"text\":\"\xf0\x9f\x98\x80 \xe2\x82\xac \xc3\xa9\"}]}",
  };
  for (const auto& json : cases) {
    agrees_with_general(json);
    CHECK(choice_text_scanner::scan(json).what != outcome::unsure);
  }
}
