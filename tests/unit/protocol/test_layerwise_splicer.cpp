#include <simdjson.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "protocol/layerwise_splicer.hpp"
#include "protocol/request_splicer.hpp"

using glm::protocol::client_request;
using glm::protocol::layerwise_splicer;
using glm::protocol::metaserver_callback;
using glm::protocol::request_splicer;

namespace {

struct parsed {
  std::string body;
  client_request req;
  explicit parsed(std::string b) : body(std::move(b)) {
    REQUIRE_FALSE(request_splicer::parse(body, req));
  }
};

metaserver_callback callback(std::string body) {
  metaserver_callback c;
  REQUIRE_FALSE(metaserver_callback::parse(body, c));
  return c;
}

bool is_valid_json(const std::string& s) {
  simdjson::dom::parser parser;
  simdjson::dom::element element;
  return parser.parse(s).get(element) == simdjson::SUCCESS;
}

const std::string url = "http://10.0.0.1:8000/v1/metaserver";
const std::string decode_kv =
    R"({"do_remote_decode":false,"do_remote_prefill":true,"metaserver":"http://10.0.0.1:8000/v1/metaserver"})";

}  // namespace

TEST_CASE("decode params name the metaserver", "[layerwise]") {
  CHECK(layerwise_splicer::decode_params(url) == decode_kv);
  // A URL is text in a JSON string: quotes, backslashes and control bytes are escaped.
  const std::string odd = layerwise_splicer::decode_params("http://h/\"x\\\n");
  CHECK(odd ==
        R"({"do_remote_decode":false,"do_remote_prefill":true,"metaserver":"http://h/\"x\\\n"})");
  CHECK(is_valid_json(odd));
}

TEST_CASE("the decode body is the client's plus the metaserver params", "[layerwise]") {
  parsed p(
      R"({"model":"m","prompt":"hi","stream":true,"stream_options":{"include_usage":true},"max_tokens":5})");
  const std::string params = layerwise_splicer::decode_params(url);
  CHECK(
      layerwise_splicer::decode_body(p.req, params) ==
      R"({"model":"m","prompt":"hi","stream":true,"stream_options":{"include_usage":true},"max_tokens":5,"kv_transfer_params":)" +
          decode_kv + "}");
  // A client's own kv_transfer_params never reaches the decoder.
  parsed q(R"({"kv_transfer_params":{"do_remote_decode":true},"prompt":"x"})");
  CHECK(layerwise_splicer::decode_body(q.req, params) ==
        R"({"prompt":"x","kv_transfer_params":)" + decode_kv + "}");
}

TEST_CASE("decode pieces view the client's bytes without copying them", "[layerwise]") {
  parsed p(R"({"model":"m","prompt":"a long prompt","n":1})");
  const std::string params = layerwise_splicer::decode_params(url);
  std::vector<std::string_view> pieces{"stale"};
  layerwise_splicer::decode_pieces(p.req, params, pieces);
  bool views_body = false;
  bool views_params = false;
  std::string joined;
  for (auto piece : pieces) {
    joined += piece;
    if (piece.data() >= p.body.data() && piece.data() < p.body.data() + p.body.size()) {
      views_body = true;
    }
    if (piece.data() == params.data()) views_params = true;
  }
  CHECK(views_body);
  CHECK(views_params);
  CHECK(joined == layerwise_splicer::decode_body(p.req, params));
}

TEST_CASE("one callback is the prefill's params verbatim", "[layerwise]") {
  const std::string posted =
      R"({"token_ids": [], "request_id": "cmpl-X-0", "remote_block_ids": [[1, 2]], "remote_port": 3})";
  const metaserver_callback c[] = {callback(" " + posted + "\n")};
  CHECK(layerwise_splicer::prefill_params(c) == posted);
  CHECK(layerwise_splicer::prefill_params({}) == "");
}

TEST_CASE("several callbacks are batched under the first one's params", "[layerwise]") {
  const std::vector<metaserver_callback> c = {
      callback(R"({"request_id":"cmpl-X-0","remote_block_ids":[[1]],"remote_host":"d1"})"),
      callback(R"({"request_id": "cmpl-X-1", "remote_block_ids": [[2]]})"),
      callback(R"({"remote_block_ids":[[3]],"request_id":"cmpl-X-2"})"),
  };
  const std::string params = layerwise_splicer::prefill_params(c);
  CHECK(params ==
        R"({"request_id":"cmpl-X-0","remote_block_ids":[[1]],"remote_host":"d1",)"
        R"("batch_kv_transfer_params":{)"
        R"("cmpl-X-0":{"request_id":"cmpl-X-0","remote_block_ids":[[1]],"remote_host":"d1"},)"
        R"("cmpl-X-1":{"request_id": "cmpl-X-1", "remote_block_ids": [[2]]},)"
        R"("cmpl-X-2":{"remote_block_ids":[[3]],"request_id":"cmpl-X-2"}}})");
  CHECK(is_valid_json(params));
}

TEST_CASE("a batch member the first callback carried is replaced", "[layerwise]") {
  const std::vector<metaserver_callback> c = {
      callback(R"({"batch_kv_transfer_params":1,"request_id":"a","batch_kv_transfer_params":2})"),
      callback(R"({"request_id":"b","batch_kv_transfer_params":{"k":1}})"),
  };
  const std::string params = layerwise_splicer::prefill_params(c);
  CHECK(params ==
        R"({"request_id":"a","batch_kv_transfer_params":{)"
        R"("a":{"batch_kv_transfer_params":1,"request_id":"a","batch_kv_transfer_params":2},)"
        R"("b":{"request_id":"b","batch_kv_transfer_params":{"k":1}}}})");
  CHECK(is_valid_json(params));
  // Ids keep the escapes the decoder wrote.
  const std::vector<metaserver_callback> e = {callback(R"({"request_id":"\u0061"})"),
                                              callback(R"({"request_id":"b\"c"})")};
  CHECK(layerwise_splicer::prefill_params(e) ==
        R"({"request_id":"\u0061","batch_kv_transfer_params":{"\u0061":{"request_id":"\u0061"},)"
        R"("b\"c":{"request_id":"b\"c"}}})");
}

TEST_CASE("the prefill body limits the prefill to one token and carries the params",
          "[layerwise]") {
  const std::string params = R"({"request_id":"chatcmpl-X","remote_port":1})";
  parsed p(
      R"({"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,)"
      R"("stream_options":{"include_usage":true},"max_tokens":50,"min_tokens":3,"temperature":0,)"
      R"("kv_transfer_params":{"client":"own"}})");
  CHECK(layerwise_splicer::prefill_body(p.req, params) ==
        R"({"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0,)"
        R"("kv_transfer_params":{"request_id":"chatcmpl-X","remote_port":1},)"
        R"("stream":false,"max_tokens":1,"min_tokens":1})");

  // max_completion_tokens only when the client sent it; escaped keys are the keys they spell.
  parsed q(R"({"prompt":"x","max_completion_tokens":9,"str\u0065am":true})");
  const std::string body = layerwise_splicer::prefill_body(q.req, params);
  CHECK(body == R"({"prompt":"x","kv_transfer_params":{"request_id":"chatcmpl-X","remote_port":1},)"
                R"("stream":false,"max_tokens":1,"min_tokens":1,"max_completion_tokens":1})");
  client_request again;
  std::string copy = body;
  REQUIRE_FALSE(request_splicer::parse(copy, again));
  CHECK_FALSE(again.stream);
  CHECK(again.max_tokens == 1);
  CHECK(again.has_max_completion_tokens);
}

TEST_CASE("the prefill body of a request with only dropped members", "[layerwise]") {
  // parse() needs a prompt or messages, so the smallest body keeps one member.
  parsed p(R"({"stream":true,"prompt":[1,2],"max_tokens":4})");
  CHECK(layerwise_splicer::prefill_body(p.req, "{}") ==
        R"({"prompt":[1,2],"kv_transfer_params":{},"stream":false,"max_tokens":1,"min_tokens":1})");
  std::vector<std::string_view> pieces;
  const std::string params = R"({"request_id":"cmpl-a-0"})";
  layerwise_splicer::prefill_pieces(p.req, params, pieces);
  std::string joined;
  bool views_params = false;
  for (auto piece : pieces) {
    joined += piece;
    if (piece.data() == params.data()) views_params = true;
  }
  CHECK(views_params);
  CHECK(joined == layerwise_splicer::prefill_body(p.req, params));
  CHECK(is_valid_json(joined));
}
