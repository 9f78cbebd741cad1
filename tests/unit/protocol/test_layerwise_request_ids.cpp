#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "protocol/layerwise_request_ids.hpp"
#include "protocol/request_splicer.hpp"

using glm::protocol::client_request;
using glm::protocol::layerwise_request_ids;
using glm::protocol::request_splicer;

namespace {

struct parsed {
  std::string body;
  client_request req;
  explicit parsed(std::string b) : body(std::move(b)) {
    REQUIRE_FALSE(request_splicer::parse(body, req));
  }
};

std::vector<std::string> ids(const std::string& body, bool chat, std::string_view id = "X") {
  parsed p(body);
  std::vector<std::string> out{"stale"};
  layerwise_request_ids::ids(p.req, chat, id, out);
  return out;
}

std::size_t count(const std::string& body) {
  parsed p(body);
  return layerwise_request_ids::prompt_count(p.req);
}

}  // namespace

TEST_CASE("a chat is one chatcmpl id", "[layerwise_ids]") {
  CHECK(ids(R"({"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]})", true,
            "5f0c-1") == std::vector<std::string>{"chatcmpl-5f0c-1"});
  // A chat body is never counted by its (absent) prompt.
  CHECK(ids(R"({"messages":[],"prompt":["a","b"]})", true) ==
        std::vector<std::string>{"chatcmpl-X"});
}

TEST_CASE("completion ids are one per prompt as vLLM expands them", "[layerwise_ids]") {
  CHECK(ids(R"({"prompt":"Hello"})", false) == std::vector<std::string>{"cmpl-X-0"});
  CHECK(ids(R"({"prompt":["a","b","c"]})", false, "r1") ==
        std::vector<std::string>{"cmpl-r1-0", "cmpl-r1-1", "cmpl-r1-2"});
  // A list of token ids is one prompt; a list of token-id lists is one per list.
  CHECK(ids(R"({"prompt":[1,2,3,4]})", false) == std::vector<std::string>{"cmpl-X-0"});
  CHECK(ids(R"({"prompt":[[1,2],[3],[4,5,6]]})", false) ==
        std::vector<std::string>{"cmpl-X-0", "cmpl-X-1", "cmpl-X-2"});
}

TEST_CASE("prompt_count walks the list over strings and nesting", "[layerwise_ids]") {
  CHECK(count(R"({"prompt":[]})") == 1);
  CHECK(count(R"({"prompt":[ ]})") == 1);
  CHECK(count(R"({"prompt":["x"]})") == 1);
  CHECK(count(R"({"prompt":[7]})") == 1);
  CHECK(count(R"({"prompt":[-1, 2e3, 0.5]})") == 1);
  // Commas, brackets and escaped quotes inside strings are not element boundaries.
  CHECK(count(R"({"prompt":["a,b]", "c\"],[", "\\", "[{"]})") == 4);
  CHECK(count("{\"prompt\":[ \"a\" ,\n\t\"b\" \r\n]}") == 2);
  CHECK(count(R"({"prompt":[[1,[2,3]],[{"a":"]"}]]})") == 2);
  // Mixed lists count their elements, as the reference proxy does (vLLM refuses them).
  CHECK(count(R"({"prompt":[1,"a"]})") == 2);
  CHECK(count(R"({"prompt":["a",1]})") == 2);
  CHECK(count(R"({"prompt":[true,false,null]})") == 3);
  CHECK(count(R"({"prompt":[{}, {}]})") == 2);
  // Not a list: one prompt.
  CHECK(count(R"({"prompt":null})") == 1);
  CHECK(count(R"({"prompt":7})") == 1);
  CHECK(count(R"({"prompt":"[\"a\",\"b\"]"})") == 1);
  CHECK(count(R"({"messages":[]})") == 1);
}

TEST_CASE("prompt_count reads the prompt as a JSON parser does", "[layerwise_ids]") {
  // The last duplicate wins; an escaped key is the same key.
  CHECK(count(R"({"prompt":["a","b"],"prompt":"c"})") == 1);
  CHECK(count(R"({"prompt":"c","prompt":["a","b"]})") == 2);
  CHECK(count(R"({"pr\u006fmpt":["a","b","c"]})") == 3);
  // Other members holding lists do not count.
  CHECK(count(R"({"stop":["x","y","z"],"prompt":"p"})") == 1);
}

TEST_CASE("many prompts give many ids", "[layerwise_ids]") {
  std::string body = R"({"prompt":[)";
  for (int i = 0; i < 1000; ++i) body += (i ? ",\"p" : "\"p") + std::to_string(i) + "\"";
  body += "]}";
  const auto out = ids(body, false, "id");
  REQUIRE(out.size() == 1000);
  CHECK(out.front() == "cmpl-id-0");
  CHECK(out.back() == "cmpl-id-999");
}
