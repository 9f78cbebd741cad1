#include <simdjson.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "protocol/request_splicer.hpp"

using glm::protocol::client_request;
using glm::protocol::member_range;
using glm::protocol::request_splicer;

namespace {

const std::string kv_prefill =
    R"("kv_transfer_params":{"do_remote_decode":true,"do_remote_prefill":false,)"
    R"("remote_engine_id":null,"remote_block_ids":null,"remote_host":null,"remote_port":null})";
const std::string prefill_tail = kv_prefill + R"(,"stream":false,"max_tokens":1,"min_tokens":1)";

// A parsed request together with the body its views point into.
struct parsed {
  std::string body;
  client_request req;
  std::optional<std::string> error;

  explicit parsed(std::string b) : body(std::move(b)) { error = request_splicer::parse(body, req); }

  std::string text(const member_range& m) const { return body.substr(m.begin, m.end - m.begin); }
  std::vector<std::string> texts() const {
    std::vector<std::string> out;
    for (const auto& m : req.members) out.push_back(text(m));
    return out;
  }
};

// An independent check with simdjson's DOM parser, which validates the whole document.
bool is_valid_json(const std::string& s) {
  simdjson::dom::parser parser;
  simdjson::dom::element element;
  return parser.parse(s).get(element) == simdjson::SUCCESS;
}

std::string minified_member(const std::string& doc, std::string_view key) {
  simdjson::dom::parser parser;
  simdjson::dom::object object;
  if (parser.parse(doc).get(object)) return "<invalid>";
  simdjson::dom::element element;
  if (object.at_key(key).get(element)) return "<absent>";
  return simdjson::minify(element);
}

}  // namespace

TEST_CASE("parse records members as exact byte ranges", "[splicer]") {
  parsed p("{ \"model\" : \"m\" ,\n  \"prompt\":\t[1, 2] \n, \"n\":3\r\n}");
  REQUIRE_FALSE(p.error);
  REQUIRE(p.req.members.size() == 3);
  CHECK(p.texts() ==
        std::vector<std::string>{"\"model\" : \"m\"", "\"prompt\":\t[1, 2]", "\"n\":3"});
  CHECK(p.req.members[0].key == "model");
  CHECK(p.req.members[0].begin == 2);
  CHECK(p.req.members[0].value_begin == 12);
  CHECK(p.req.members[1].key == "prompt");
  CHECK(p.body[p.req.members[1].value_begin] == '[');
  CHECK(p.req.members[2].key == "n");
  CHECK(p.req.body.data() == p.body.data());
  CHECK(p.req.body.size() == p.body.size());
  CHECK(p.req.has_prompt);
  CHECK_FALSE(p.req.has_messages);
}

TEST_CASE("parse grows capacity for padding but never size", "[splicer]") {
  std::string body = R"({"prompt":"x"})";
  body.shrink_to_fit();
  const std::string before = body;
  client_request req;
  REQUIRE_FALSE(request_splicer::parse(body, req));
  CHECK(body == before);
  CHECK(body.capacity() >= body.size() + simdjson::SIMDJSON_PADDING);
  CHECK(req.body.data() == body.data());
}

TEST_CASE("parse extracts the fields the proxy needs", "[splicer]") {
  SECTION("completion request") {
    parsed p(R"({"model":"m","prompt":"hi","max_tokens":50,"stream":true})");
    REQUIRE_FALSE(p.error);
    CHECK(p.req.stream);
    CHECK_FALSE(p.req.include_usage);
    CHECK(p.req.max_tokens == 50);
    CHECK_FALSE(p.req.has_max_completion_tokens);
    CHECK(p.req.has_prompt);
    CHECK_FALSE(p.req.has_messages);
  }
  SECTION("chat request") {
    parsed p(R"({"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":7,)"
             R"("stream":true,"stream_options":{"include_usage":true}})");
    REQUIRE_FALSE(p.error);
    CHECK(p.req.stream);
    CHECK(p.req.include_usage);
    CHECK_FALSE(p.req.max_tokens);
    CHECK(p.req.has_max_completion_tokens);
    CHECK(p.req.has_messages);
    CHECK_FALSE(p.req.has_prompt);
  }
  SECTION("stream must be the boolean true") {
    CHECK_FALSE(parsed(R"({"prompt":"x","stream":false})").req.stream);
    CHECK_FALSE(parsed(R"({"prompt":"x","stream":"true"})").req.stream);
    CHECK_FALSE(parsed(R"({"prompt":"x","stream":1})").req.stream);
    CHECK_FALSE(parsed(R"({"prompt":"x","stream":null})").req.stream);
    CHECK(parsed(R"({"prompt":"x","stream" :  true  })").req.stream);
  }
  SECTION("include_usage must be the boolean true inside an object") {
    CHECK(parsed(R"({"prompt":"x","stream_options":{"a":[1],"include_usage" : true }})")
              .req.include_usage);
    CHECK_FALSE(
        parsed(R"({"prompt":"x","stream_options":{"include_usage":false}})").req.include_usage);
    CHECK_FALSE(
        parsed(R"({"prompt":"x","stream_options":{"include_usage":"true"}})").req.include_usage);
    CHECK_FALSE(parsed(R"({"prompt":"x","stream_options":null})").req.include_usage);
    CHECK_FALSE(parsed(R"({"prompt":"x","stream_options":{}})").req.include_usage);
    CHECK_FALSE(parsed(R"({"prompt":"x","include_usage":true})").req.include_usage);
    CHECK_FALSE(parsed(R"({"prompt":"x","stream_options":{"x":{"include_usage":true}}})")
                    .req.include_usage);
  }
  SECTION("max_tokens only when it is an integer") {
    CHECK(parsed(R"({"prompt":"x","max_tokens":0})").req.max_tokens == 0);
    CHECK(parsed(R"({"prompt":"x","max_tokens":-3})").req.max_tokens == -3);
    CHECK(parsed(R"({"prompt":"x","max_tokens":9223372036854775807})").req.max_tokens == INT64_MAX);
    CHECK_FALSE(parsed(R"({"prompt":"x","max_tokens":9223372036854775808})").req.max_tokens);
    CHECK_FALSE(parsed(R"({"prompt":"x","max_tokens":1.5})").req.max_tokens);
    CHECK_FALSE(parsed(R"({"prompt":"x","max_tokens":1e2})").req.max_tokens);
    CHECK_FALSE(parsed(R"({"prompt":"x","max_tokens":"5"})").req.max_tokens);
    CHECK_FALSE(parsed(R"({"prompt":"x","max_tokens":null})").req.max_tokens);
  }
  SECTION("max_completion_tokens counts whatever its value") {
    CHECK(parsed(R"({"prompt":"x","max_completion_tokens":null})").req.has_max_completion_tokens);
  }
  SECTION("a later duplicate overrides an earlier one") {
    parsed p(R"({"prompt":"a","stream":true,"max_tokens":5,"stream":false,"max_tokens":"x",)"
             R"("stream_options":{"include_usage":true},"stream_options":{}})");
    REQUIRE_FALSE(p.error);
    CHECK_FALSE(p.req.stream);
    CHECK_FALSE(p.req.max_tokens);
    CHECK_FALSE(p.req.include_usage);
    parsed q(R"({"prompt":"a","stream":false,"stream":true,"max_tokens":"x","max_tokens":8})");
    CHECK(q.req.stream);
    CHECK(q.req.max_tokens == 8);
  }
  SECTION("members with the same names inside other values are not the proxy's") {
    parsed p(R"({"prompt":"x","extra":{"stream":true,"max_tokens":5,"messages":[]},)"
             R"("list":[{"stream":true},{"stream_options":{"include_usage":true}}]})");
    REQUIRE_FALSE(p.error);
    CHECK_FALSE(p.req.stream);
    CHECK_FALSE(p.req.max_tokens);
    CHECK_FALSE(p.req.include_usage);
    CHECK_FALSE(p.req.has_messages);
  }
}

TEST_CASE("find returns the last member with a name", "[splicer]") {
  parsed p(R"({"prompt":"a","model":"m","prompt":"b","str\u0065am":true})");
  REQUIRE_FALSE(p.error);
  const member_range* prompt = p.req.find("prompt");
  REQUIRE(prompt != nullptr);
  CHECK(p.text(*prompt) == R"("prompt":"b")");
  CHECK(prompt == &p.req.members[2]);
  CHECK(p.req.find("missing") == nullptr);
  CHECK(p.req.find("promp") == nullptr);
  // A key written with escapes is found by the name it decodes to.
  const member_range* stream = p.req.find("stream");
  REQUIRE(stream != nullptr);
  CHECK(stream->key == R"(str\u0065am)");
}

TEST_CASE("prefill body replaces the PD members and keeps the rest verbatim", "[splicer]") {
  SECTION("completion") {
    parsed p(R"({"model":"m","prompt":"hi","max_tokens":50,"stream":true,"temperature":0.7})");
    REQUIRE_FALSE(p.error);
    CHECK(request_splicer::prefill_body(p.req) ==
          R"({"model":"m","prompt":"hi","temperature":0.7,)" + prefill_tail + "}");
  }
  SECTION("max_completion_tokens is set to 1 only when the client sent it") {
    parsed p(R"({"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":64,"n":1})");
    REQUIRE_FALSE(p.error);
    CHECK(request_splicer::prefill_body(p.req) ==
          R"({"messages":[{"role":"user","content":"hi"}],"n":1,)" + prefill_tail +
              R"(,"max_completion_tokens":1})");
  }
  SECTION("stream_options, min_tokens and a client kv_transfer_params are removed") {
    parsed p(R"({"prompt":"p","stream":true,"stream_options":{"include_usage":true},)"
             R"("min_tokens":4,"kv_transfer_params":{"x":1},"top_p":1})");
    REQUIRE_FALSE(p.error);
    CHECK(request_splicer::prefill_body(p.req) ==
          R"({"prompt":"p","top_p":1,)" + prefill_tail + "}");
  }
  SECTION("duplicates of kept members stay, in order; duplicates of replaced members all go") {
    parsed p(R"({"prompt":"a","stream":true,"stream":false,"prompt":"b","max_tokens":2,)"
             R"("max_tokens":3})");
    REQUIRE_FALSE(p.error);
    CHECK(request_splicer::prefill_body(p.req) ==
          R"({"prompt":"a","prompt":"b",)" + prefill_tail + "}");
  }
  SECTION("whitespace inside and between kept neighbours is kept, around dropped ones it is not") {
    parsed p("{\n  \"model\" :\t\"m\",\n  \"prompt\" : [ 1 , 2 ] ,\n  \"stream\" : true\n}\n");
    REQUIRE_FALSE(p.error);
    CHECK(request_splicer::prefill_body(p.req) ==
          "{\"model\" :\t\"m\",\n  \"prompt\" : [ 1 , 2 ]," + prefill_tail + "}");
  }
  SECTION("escaped quotes, backslashes and unicode in strings are copied as written") {
    const std::string prompt =
        R"("prompt":"say \"hi\" \\ \/ \u00e9 é 😀 \ud83d\ude00 \n\t tail \\")";
    parsed p("{" + prompt + R"(,"stop":["\"}", "{\""]})");
    REQUIRE_FALSE(p.error);
    CHECK(request_splicer::prefill_body(p.req) ==
          "{" + prompt + R"(,"stop":["\"}", "{\""],)" + prefill_tail + "}");
  }
  SECTION("keys with escapes are matched by the name they decode to") {
    parsed p(R"({"prompt":"x","str\u0065am":true,"a\"b":1,"max\u005ftokens":9,"\u00e9":2})");
    REQUIRE_FALSE(p.error);
    CHECK(p.req.stream);
    CHECK(p.req.max_tokens == 9);
    CHECK(p.req.members[2].key == R"(a\"b)");
    CHECK(request_splicer::prefill_body(p.req) ==
          R"({"prompt":"x","a\"b":1,"\u00e9":2,)" + prefill_tail + "}");
  }
  SECTION("prompt only") {
    parsed p(R"({"prompt":"x"})");
    REQUIRE_FALSE(p.error);
    CHECK(request_splicer::prefill_body(p.req) == R"({"prompt":"x",)" + prefill_tail + "}");
  }
  SECTION("an object named stream inside another member is not touched") {
    const std::string extra =
        R"("extra_body":{"stream":true,"max_tokens":5,"kv_transfer_params":{"a":1},)"
        R"("stream_options":{"include_usage":true}})";
    parsed p(R"({"prompt":"x",)" + extra + R"(,"stream":true})");
    REQUIRE_FALSE(p.error);
    CHECK(request_splicer::prefill_body(p.req) ==
          R"({"prompt":"x",)" + extra + "," + prefill_tail + "}");
  }
  SECTION("no member kept: no stray comma") {
    client_request empty;
    CHECK(request_splicer::prefill_body(empty) == "{" + prefill_tail + "}");
    std::string body = R"({"stream":true,"max_completion_tokens":3})";
    client_request req;
    req.body = body;
    req.members = {member_range{"stream", 1, 14, 10},
                   member_range{"max_completion_tokens", 15, 40, 39}};
    req.has_max_completion_tokens = true;
    CHECK(request_splicer::prefill_body(req) ==
          "{" + prefill_tail + R"(,"max_completion_tokens":1})");
  }
}

TEST_CASE("prefill body is valid JSON with every other member unchanged", "[splicer]") {
  parsed p(R"({ "model": "qwen", "messages": [ {"role": "system", "content": "be \"brief\""},)"
           "\n {\"role\": \"user\", \"content\": \"caf\\u00e9 \xe2\x82\xac\"} ],\n"
           R"( "temperature": 0.0, "stop": null, "logit_bias": {"50256": -100},)"
           R"( "stream": true, "stream_options": {"include_usage": true}, "max_tokens": 99,)"
           R"( "min_tokens": 2, "max_completion_tokens": 99, "seed": 12345678901234567890,)"
           R"( "kv_transfer_params": null, "user": "u-1" })");
  REQUIRE_FALSE(p.error);
  const std::string prefill = request_splicer::prefill_body(p.req);
  REQUIRE(is_valid_json(prefill));

  // Semantically: the replaced members have their new values.
  CHECK(minified_member(prefill, "stream") == "false");
  CHECK(minified_member(prefill, "max_tokens") == "1");
  CHECK(minified_member(prefill, "min_tokens") == "1");
  CHECK(minified_member(prefill, "max_completion_tokens") == "1");
  CHECK(minified_member(prefill, "stream_options") == "<absent>");
  CHECK(minified_member(prefill, "kv_transfer_params") ==
        R"({"do_remote_decode":true,"do_remote_prefill":false,"remote_engine_id":null,)"
        R"("remote_block_ids":null,"remote_host":null,"remote_port":null})");

  // Byte for byte: the kept members of the prefill body are the client's members.
  parsed again(prefill);
  REQUIRE_FALSE(again.error);
  std::vector<std::string> kept;
  for (const auto& m : p.req.members) {
    const std::string key(m.key);
    if (key != "stream" && key != "stream_options" && key != "max_tokens" && key != "min_tokens" &&
        key != "max_completion_tokens" && key != "kv_transfer_params") {
      kept.push_back(p.text(m));
    }
  }
  REQUIRE(kept.size() == 7);
  std::vector<std::string> head = again.texts();
  head.resize(kept.size());
  CHECK(head == kept);
}

TEST_CASE("a 1 MiB prompt splices correctly", "[splicer]") {
  std::string prompt;
  prompt.reserve(1 << 20);
  const std::string piece = "The quick brown fox \\\"jumps\\\" over \\u00e9 the lazy dog.\\n ";
  while (prompt.size() < (1 << 20)) prompt += piece;
  const std::string body =
      R"({"model":"m","prompt":")" + prompt +
      R"(","max_tokens":128,"stream":true,"stream_options":{"include_usage":true}})";
  parsed p(body);
  REQUIRE_FALSE(p.error);
  CHECK(p.req.stream);
  CHECK(p.req.include_usage);
  CHECK(p.req.max_tokens == 128);
  REQUIRE(p.req.members.size() == 5);
  CHECK(p.text(p.req.members[1]) == "\"prompt\":\"" + prompt + "\"");

  const std::string prefill = request_splicer::prefill_body(p.req);
  CHECK(prefill == R"({"model":"m","prompt":")" + prompt + "\"," + prefill_tail + "}");
  CHECK(prefill.capacity() == prefill.size());  // sized once, up front
  CHECK(is_valid_json(prefill));

  const std::string kv = R"({"remote_block_ids":[[1,2,3]],"remote_engine_id":"0"})";
  CHECK(request_splicer::decode_body(p.req, kv) ==
        R"({"model":"m","prompt":")" + prompt +
            R"(","max_tokens":128,"stream":true,"stream_options":{"include_usage":true},)" +
            R"("kv_transfer_params":)" + kv + "}");
}

TEST_CASE("a 1 MiB prompt of \\u escapes splices correctly", "[splicer]") {
  // Python clients send non-ASCII text as \uXXXX by default: one escape every six bytes.
  std::string prompt;
  while (prompt.size() < (1 << 20)) prompt += R"(\u4f60\u597d\uff0c\u4e16\u754c\n)";
  parsed p(R"({"prompt":")" + prompt + R"(","stream":false})");
  REQUIRE_FALSE(p.error);
  CHECK(request_splicer::prefill_body(p.req) ==
        R"({"prompt":")" + prompt + "\"," + prefill_tail + "}");
  prompt.back() = 'q';  // "\q" is not an escape
  CHECK(parsed(R"({"prompt":")" + prompt + R"("})").error);
}

TEST_CASE("decode body adds the prefiller's kv_transfer_params", "[splicer]") {
  const std::string kv =
      "{\"do_remote_prefill\":true,\"remote_block_ids\":[[12]],\n  \"remote_host\":\"192.0.0.1\"}";
  SECTION("every member is kept, stream_options and max_tokens included") {
    parsed p(R"({"model":"m","prompt":"hi","max_tokens":50,"min_tokens":2,"stream":true,)"
             R"("stream_options":{"include_usage":true}})");
    REQUIRE_FALSE(p.error);
    CHECK(request_splicer::decode_body(p.req, kv) ==
          R"({"model":"m","prompt":"hi","max_tokens":50,"min_tokens":2,"stream":true,)"
          R"("stream_options":{"include_usage":true},"kv_transfer_params":)" +
              kv + "}");
  }
  SECTION("a client's own kv_transfer_params is replaced, duplicates included") {
    parsed p(R"({"kv_transfer_params":{"a":1},"prompt":"hi","kv_transfer_params":null})");
    REQUIRE_FALSE(p.error);
    CHECK(request_splicer::decode_body(p.req, kv) ==
          R"({"prompt":"hi","kv_transfer_params":)" + kv + "}");
  }
  SECTION("no kv_transfer_params from the prefiller: the body is returned as sent") {
    parsed p("{ \"prompt\" : \"hi\" ,\n \"stream\":true }\n");
    REQUIRE_FALSE(p.error);
    CHECK(request_splicer::decode_body(p.req, "") == p.body);
  }
  SECTION("no member kept: no stray comma") {
    client_request empty;
    CHECK(request_splicer::decode_body(empty, R"({"a":1})") == R"({"kv_transfer_params":{"a":1}})");
  }
  SECTION("decode body is valid JSON") {
    parsed p(R"({"messages":[{"role":"user","content":"x"}],"stream":false})");
    REQUIRE_FALSE(p.error);
    CHECK(is_valid_json(request_splicer::decode_body(p.req, kv)));
  }
}

TEST_CASE("parse accepts valid JSON that simdjson's typed getters would refuse", "[splicer]") {
  // vLLM parses with Python's json, which takes all of these; a 400 from the proxy would be wrong.
  for (const char* body : {
           R"({"prompt":"x","seed":123456789012345678901234567890})",
           R"({"prompt":"x","temperature":1e400})",
           R"({"prompt":"\ud800 lone surrogate escape"})",
           R"({"prompt":"\u4f60\u597d"})",
           R"({"prompt":"\\"})",
           R"({"prompt":"ends in an escape \n"})",
           R"({"prompt":"x","a":-0.0e+0,"b":0,"c":-1E-7})",
           R"({"prompt":[],"messages":{}})",
           "\t\r\n {\"prompt\":\"x\"} \n",
       }) {
    INFO(body);
    CHECK_FALSE(parsed(body).error);
  }
  // The limit is 1000 levels below the top-level object; simdjson asserts past 1024 in debug
  // builds.
  std::string deep =
      R"({"prompt":"x","d":)" + std::string(1000, '[') + std::string(1000, ']') + "}";
  CHECK_FALSE(parsed(deep).error);
  std::string deeper =
      R"({"prompt":"x","d":)" + std::string(1001, '[') + std::string(1001, ']') + "}";
  CHECK(parsed(deeper).error);
}

TEST_CASE("parse rejects bodies that are not a JSON object with prompt or messages", "[splicer]") {
  const std::vector<std::string> bad = {
      "",
      "   \n",
      "[]",
      R"([{"prompt":"x"}])",
      "null",
      "true",
      "42",
      R"("prompt")",
      "{",
      R"({"prompt":"x")",
      R"({"prompt":"x",)",
      R"({"prompt":"x"} x)",
      R"({"prompt":"x"}})",
      R"({"prompt":"x"}{"messages":[]})",
      R"({"prompt":"x"} [])",
      R"({"prompt":"unterminated})",
      R"({"prompt" "x"})",
      R"({"prompt":"x",})",
      R"({,"prompt":"x"})",
      R"({"prompt":"x" "model":"m"})",
      R"({prompt:"x"})",
      R"({'prompt':'x'})",
      R"({"prompt":tru})",
      R"({"prompt":nul})",
      R"({"prompt":True})",
      R"({"prompt":NaN})",
      R"({"prompt":"x","n":01})",
      R"({"prompt":"x","n":1.})",
      R"({"prompt":"x","n":.5})",
      R"({"prompt":"x","n":1e})",
      R"({"prompt":"x","n":-})",
      R"({"prompt":"x","n":+1})",
      R"({"prompt":"x","a":[1,,2]})",
      R"({"prompt":"x","a":[1,2})",
      R"({"prompt":"x","a":{"b":}})",
      R"({"prompt":"x","a":{"b" 1}})",
      // A string followed by ':' where a value ends (found by fuzzing: simdjson's skip takes it
      // for an object key).
      R"({"prompt":"x","m":["c":[1]}]})",
      R"({"prompt":"x","m":["c":{"a":1}}]})",
      R"({"model":"m","messages":["content":[{"type":"text","text":"x"}]}]})",
      R"({"prompt":"x","m":{"a":"c":[1]}}})",
      R"({"prompt":"x":[1]}})",
      R"({"prompt":"x","m":["c":1]})",
      R"({"prompt":"bad \q escape"})",
      R"({"prompt":"bad \u12 escape"})",
      R"({"prompt":"bad \u00eg escape"})",
      R"({"prompt":"cut \u00e"})",
      R"({"pr\qompt":"x"})",
      "{\"prompt\":\"control \x01 byte\"}",
      "{\"prompt\":\"bad utf-8 \xff\"}",
      R"({"prompt":"x","d":)" + std::string(2000, '[') + std::string(2000, ']') + "}",
      R"({"prompt":"x","d":)" + std::string(1 << 20, '[') + std::string(1 << 20, ']') + "}",
      R"({"prompt":"x","d":)" + std::string(1 << 20, '{'),
      "{}",
      R"({"model":"m","max_tokens":5})",
      R"({"Prompt":"x","extra":{"prompt":"y","messages":[]}})",
  };
  REQUIRE(bad.size() >= 15);
  for (const std::string& body : bad) {
    INFO("body: " << body.substr(0, 80));
    parsed p(body);
    REQUIRE(p.error);
    CHECK_FALSE(p.error->empty());
    CHECK(p.req.members.empty());
    CHECK(p.req.body.empty());
  }
}

TEST_CASE("parse error messages are fit for a 400 answer", "[splicer]") {
  CHECK(*parsed("[1]").error == "request body is not a JSON object");
  CHECK(*parsed("null").error == "request body is not a JSON object");
  CHECK(*parsed("\"s\"").error == "request body is not a JSON object");
  CHECK(*parsed(R"({"model":"m"})").error == R"(request body must contain "prompt" or "messages")");
  CHECK(*parsed("").error == "request body is empty; expected a JSON object");
  CHECK(*parsed(R"({"prompt":"x"}})").error == "request body has data after the JSON object");
  CHECK(parsed(R"({"prompt":"x",})").error->rfind("request body is not valid JSON: ", 0) == 0);
  const std::string deep =
      R"({"prompt":"x","d":)" + std::string(2000, '[') + std::string(2000, ']') + "}";
  CHECK(*parsed(deep).error == "request body is nested too deeply");
}

TEST_CASE("parse resets a reused client_request", "[splicer]") {
  std::string first = R"({"prompt":"x","stream":true,"max_tokens":3})";
  client_request req;
  REQUIRE_FALSE(request_splicer::parse(first, req));
  std::string second = R"({"messages":[]})";
  REQUIRE_FALSE(request_splicer::parse(second, req));
  CHECK_FALSE(req.stream);
  CHECK_FALSE(req.max_tokens);
  CHECK_FALSE(req.has_prompt);
  CHECK(req.members.size() == 1);
}

TEST_CASE("pieces view the client's bytes instead of copying them", "[request_splicer]") {
  using glm::protocol::request_splicer;
  std::string body =
      R"({"model":"m", "prompt":"a long prompt" ,"stream":true,"temperature":0.5,"max_tokens":9})";
  glm::protocol::client_request req;
  REQUIRE_FALSE(request_splicer::parse(body, req));

  std::vector<std::string_view> pieces;
  request_splicer::prefill_pieces(req, pieces);
  std::string joined;
  for (auto p : pieces) joined += p;
  CHECK(joined == request_splicer::prefill_body(req));
  // model and prompt are adjacent and kept: one view of the body, separators as written.
  auto in_body = [&](std::string_view p) {
    return p.data() >= body.data() && p.data() + p.size() <= body.data() + body.size();
  };
  REQUIRE(pieces.size() >= 2);
  CHECK(pieces[1] == R"("model":"m", "prompt":"a long prompt")");
  CHECK(in_body(pieces[1]));
  CHECK(pieces[3] == R"("temperature":0.5)");
  CHECK(in_body(pieces[3]));

  std::string kv = R"({"remote_engine_id":"e"})";
  request_splicer::decode_pieces(req, kv, pieces);
  joined.clear();
  for (auto p : pieces) joined += p;
  CHECK(joined == request_splicer::decode_body(req, kv));
  CHECK(pieces[1].size() == body.size() - 2);  // every member kept: one view of all of them
  CHECK(in_body(pieces[1]));
  CHECK(pieces[pieces.size() - 2].data() == kv.data());

  request_splicer::decode_pieces(req, {}, pieces);
  REQUIRE(pieces.size() == 1);
  CHECK(pieces[0].data() == body.data());
}
