#include <simdjson.h>

#include <catch2/catch.hpp>
#include <string>

#include "protocol/json_error.hpp"

using glm::protocol::json_error;

namespace {

// error.message as a JSON parser reads it, or "<invalid>" when the body is not valid JSON.
std::string message_of(const std::string& body) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(body).get(root)) return "<invalid>";
  std::string_view message;
  if (root.at_pointer("/error/message").get(message)) return "<no message>";
  return std::string(message);
}

std::string escaped(std::string_view s) {
  std::string out = "prefix:";
  json_error::escape_into(out, s);
  return out;
}

}  // namespace

TEST_CASE("make builds vLLM's error shape", "[json_error]") {
  CHECK(json_error::make("bad body", "BadRequestError", 400) ==
        R"({"error":{"message":"bad body","type":"BadRequestError","param":null,"code":400}})");
  CHECK(json_error::make("", "InternalServerError", 500) ==
        R"({"error":{"message":"","type":"InternalServerError","param":null,"code":500}})");
  CHECK(json_error::make(R"(say "no")", "BadRequestError", 400) ==
        R"({"error":{"message":"say \"no\"","type":"BadRequestError","param":null,"code":400}})");
}

TEST_CASE("escape_into appends a JSON string's inside", "[json_error]") {
  CHECK(escaped("plain text") == "prefix:plain text");
  CHECK(escaped("") == "prefix:");
  CHECK(escaped(R"(a "quoted" \ back\slash)") == R"(prefix:a \"quoted\" \\ back\\slash)");
  CHECK(escaped("\n\r\t\b\f") == R"(prefix:\n\r\t\b\f)");
  CHECK(escaped(std::string_view("\x00\x01\x1f", 3)) == R"(prefix:\u0000\u0001\u001f)");
  CHECK(escaped("\x7f ~ /") == "prefix:\x7f ~ /");
  CHECK(escaped("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
        "prefix:caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  SECTION("bytes that are not UTF-8 become U+FFFD so the result stays valid JSON") {
    CHECK(escaped("latin-1 caf\xe9!") == R"(prefix:latin-1 caf\ufffd!)");
    CHECK(escaped("\xff\xfe") == R"(prefix:\ufffd\ufffd)");
    CHECK(escaped("cut \xe2\x82") == R"(prefix:cut \ufffd\ufffd)");
    CHECK(escaped("surrogate \xed\xa0\x80") == R"(prefix:surrogate \ufffd\ufffd\ufffd)");
    CHECK(escaped("overlong \xc0\xaf ok \xc3\xa9") == "prefix:overlong \\ufffd\\ufffd ok \xc3\xa9");
  }
}

TEST_CASE("escaped text reads back as the original", "[json_error]") {
  std::string all;
  for (int c = 1; c < 0x80; ++c) all += char(c);
  all += "\xc3\xa9\xf0\x9f\x98\x80";
  const std::string body = json_error::make(all, "BadRequestError", 400);
  CHECK(message_of(body) == all);
}

TEST_CASE("type_for maps statuses to vLLM's error types", "[json_error]") {
  CHECK(json_error::type_for(400) == "BadRequestError");
  CHECK(json_error::type_for(404) == "NotFoundError");
  CHECK(json_error::type_for(405) == "MethodNotAllowed");
  CHECK(json_error::type_for(413) == "RequestEntityTooLarge");
  CHECK(json_error::type_for(503) == "ServiceUnavailableError");
  CHECK(json_error::type_for(504) == "GatewayTimeout");
  CHECK(json_error::type_for(401) == "AuthenticationError");
  CHECK(json_error::type_for(403) == "PermissionDeniedError");
  CHECK(json_error::type_for(422) == "BadRequestError");
  CHECK(json_error::type_for(429) == "BadRequestError");
  CHECK(json_error::type_for(500) == "InternalServerError");
  CHECK(json_error::type_for(502) == "InternalServerError");
  CHECK(json_error::type_for(599) == "InternalServerError");
}

TEST_CASE("wrap_upstream passes JSON objects and wraps everything else", "[json_error]") {
  SECTION("a vLLM error body passes unchanged") {
    const std::string body =
        R"({"object":"error","message":"This model's maximum context length is 4096 tokens.",)"
        R"("type":"BadRequestError","param":null,"code":400})";
    CHECK(json_error::wrap_upstream(body, 400) == body);
    CHECK(json_error::wrap_upstream(" \n" + body + "\n", 400) == " \n" + body + "\n");
    CHECK(json_error::wrap_upstream(R"({"detail":"Not Found"})", 404) ==
          R"({"detail":"Not Found"})");
  }
  SECTION("plain text is wrapped, trimmed") {
    CHECK(json_error::wrap_upstream("Internal Server Error\n", 500) ==
          R"({"error":{"message":"Internal Server Error","type":"InternalServerError",)"
          R"("param":null,"code":500}})");
  }
  SECTION("HTML is wrapped and escaped") {
    const std::string html = "<html>\n<title>502 \"Bad\" Gateway</title>\n</html>";
    const std::string wrapped = json_error::wrap_upstream(html, 502);
    CHECK(wrapped == R"({"error":{"message":"<html>\n<title>502 \"Bad\" Gateway</title>\n</html>",)"
                     R"("type":"InternalServerError","param":null,"code":502}})");
    CHECK(message_of(wrapped) == html);
  }
  SECTION("an empty body says so") {
    CHECK(json_error::wrap_upstream("", 502) ==
          R"({"error":{"message":"upstream returned status 502 with an empty body",)"
          R"("type":"InternalServerError","param":null,"code":502}})");
    CHECK(message_of(json_error::wrap_upstream(" \r\n", 503)) ==
          "upstream returned status 503 with an empty body");
  }
  SECTION("JSON that is not one whole object is wrapped") {
    for (std::string body : {
             std::string("[1,2]"),
             std::string("\"text\""),
             std::string("null"),
             std::string(R"({"error":)"),
             std::string(R"({"error":"x"} and more)"),
             std::string(R"({"error":"x"}{"error":"y"})"),
             std::string(R"({"a":[1,,2]})"),
             std::string("{ not json }"),
         }) {
      INFO(body);
      const std::string wrapped = json_error::wrap_upstream(body, 500);
      CHECK(wrapped != body);
      CHECK(message_of(wrapped) == body);
    }
  }
  SECTION("non-UTF-8 text still yields valid JSON") {
    CHECK(message_of(json_error::wrap_upstream("erreur \xe9", 500)) == "erreur \xef\xbf\xbd");
  }
}
