// libFuzzer target: request_splicer::parse on any bytes, then every body built from a request it
// accepted must itself be a JSON object the proxy accepts. Built by tests/fuzz/run.sh only.
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "protocol/recompute_splicer.hpp"
#include "protocol/request_splicer.hpp"

using glm::protocol::client_request;
using glm::protocol::recompute_splicer;
using glm::protocol::request_splicer;

namespace {

#define FUZZ_ASSERT(cond) \
  do {                    \
    if (!(cond)) {        \
      std::abort();       \
    }                     \
  } while (0)

simdjson::error_code dom_error(const std::string& body) {
  simdjson::dom::parser dom;
  simdjson::dom::object object;
  return dom.parse(body).get(object);
}

// What simdjson's DOM parser refuses but Python's json (so vLLM) accepts, and the proxy forwards
// as the client wrote it: numbers out of double/int64 range, and \u escapes of lone UTF-16
// surrogates ("\udddd", which Python decodes to a lone surrogate; simdjson says STRING_ERROR).
bool python_accepts(simdjson::error_code ec) {
  return ec == simdjson::NUMBER_ERROR || ec == simdjson::NUMBER_OUT_OF_RANGE ||
         ec == simdjson::STRING_ERROR;
}

// Re-parses a body the proxy built from a client's body whose DOM parse gave `client_ec`. Our own
// validator is the oracle; simdjson's DOM parser is a second one: the built body must parse
// whenever the client's did, and otherwise may only fail the way Python's json forgives.
void require_object(std::string body, client_request& again, simdjson::error_code client_ec) {
  FUZZ_ASSERT(!request_splicer::parse(body, again));
  const auto ec = dom_error(body);
  FUZZ_ASSERT(ec == simdjson::SUCCESS || (python_accepts(client_ec) && python_accepts(ec)));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string body(reinterpret_cast<const char*>(data), size);
  client_request req;
  if (request_splicer::parse(body, req)) return 0;
  FUZZ_ASSERT(req.has_prompt || req.has_messages);
  for (const auto& m : req.members) {
    FUZZ_ASSERT(m.begin < m.value_begin && m.value_begin < m.end && m.end <= body.size());
    FUZZ_ASSERT(body[m.begin] == '"');
  }

  const auto client_ec = dom_error(body);
  // The proxy's validator accepts at most what Python's json forgives beyond simdjson's DOM.
  FUZZ_ASSERT(client_ec == simdjson::SUCCESS || python_accepts(client_ec));

  client_request again;
  const std::string prefill = request_splicer::prefill_body(req);
  require_object(prefill, again, client_ec);
  FUZZ_ASSERT(!again.stream && again.max_tokens == 1);
  FUZZ_ASSERT(again.has_max_completion_tokens == req.has_max_completion_tokens);

  require_object(request_splicer::decode_body(req, R"({"remote_host":"h","remote_port":1})"), again,
                 client_ec);
  FUZZ_ASSERT(again.stream == req.stream && again.include_usage == req.include_usage);
  FUZZ_ASSERT(request_splicer::decode_body(req, "") == std::string_view(body));

  // A string prompt can always be extended.
  const auto* prompt = req.find("prompt");
  if (prompt != nullptr && body[prompt->value_begin] == '"') {
    FUZZ_ASSERT(recompute_splicer::body(req, "x", 1).has_value());
  }
  // Generated text is JSON-escaped as a decoder sends it.
  for (std::string_view generated : {std::string_view(""), std::string_view(R"( a\"b\u00e9\\ )")}) {
    auto recomputed = recompute_splicer::body(req, generated, 7);
    if (!recomputed) continue;
    require_object(*recomputed, again, client_ec);
    FUZZ_ASSERT(again.max_tokens == 7);
    FUZZ_ASSERT(again.has_max_completion_tokens == req.has_max_completion_tokens);
    FUZZ_ASSERT(recomputed->size() >= generated.size());
  }
  return 0;
}
