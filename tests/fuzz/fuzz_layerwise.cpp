// libFuzzer target: the layerwise PD mode's protocol pieces on any bytes. A metaserver callback
// the parser accepts must come out (alone or batched) as an object it accepts again with the same
// request_id; a client body request_splicer accepts must give a decode and a prefill body it
// accepts again, and as many request ids as prompt_count says. Built by tests/fuzz/run.sh only.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/layerwise_request_ids.hpp"
#include "protocol/layerwise_splicer.hpp"
#include "protocol/metaserver_callback.hpp"
#include "protocol/request_splicer.hpp"

using glm::protocol::client_request;
using glm::protocol::layerwise_request_ids;
using glm::protocol::layerwise_splicer;
using glm::protocol::metaserver_callback;
using glm::protocol::request_splicer;

namespace {

#define FUZZ_ASSERT(cond) \
  do {                    \
    if (!(cond)) {        \
      std::abort();       \
    }                     \
  } while (0)

void check_callback(const std::string& input) {
  std::string body = input;
  metaserver_callback c;
  if (metaserver_callback::parse(body, c)) {
    FUZZ_ASSERT(c.params.empty() && c.members.empty());
    return;
  }
  FUZZ_ASSERT(!c.members.empty());
  for (const auto& m : c.members) {
    FUZZ_ASSERT(m.begin < m.end && m.end < c.params.size() && c.params[m.begin] == '"');
  }
  FUZZ_ASSERT(c.request_id_json.size() >= 2 && c.request_id_json.front() == '"');

  metaserver_callback again;
  std::string copy = c.params;
  FUZZ_ASSERT(!metaserver_callback::parse(copy, again));
  FUZZ_ASSERT(again.request_id == c.request_id && again.params == c.params);

  const std::vector<metaserver_callback> two = {c, again};
  std::string batched = layerwise_splicer::prefill_params(two);
  metaserver_callback from_batch;
  FUZZ_ASSERT(!metaserver_callback::parse(batched, from_batch));
  FUZZ_ASSERT(from_batch.request_id == c.request_id);
  std::size_t batch_members = 0;
  for (const auto& m : from_batch.members) batch_members += m.batch_key ? 1 : 0;
  FUZZ_ASSERT(batch_members == 1);
}

void check_client_body(const std::string& input) {
  std::string body = input;
  client_request req;
  if (request_splicer::parse(body, req)) return;
  std::vector<std::string> ids;
  layerwise_request_ids::ids(req, false, "x", ids);
  FUZZ_ASSERT(ids.size() == layerwise_request_ids::prompt_count(req) && !ids.empty());
  FUZZ_ASSERT(ids.size() <= body.size());

  client_request again;
  std::string decode =
      layerwise_splicer::decode_body(req, layerwise_splicer::decode_params("http://h:1/v1/m"));
  FUZZ_ASSERT(!request_splicer::parse(decode, again));
  FUZZ_ASSERT(again.stream == req.stream && again.include_usage == req.include_usage);
  FUZZ_ASSERT(layerwise_request_ids::prompt_count(again) == ids.size());

  std::string prefill = layerwise_splicer::prefill_body(req, R"({"request_id":"cmpl-x-0"})");
  FUZZ_ASSERT(!request_splicer::parse(prefill, again));
  FUZZ_ASSERT(!again.stream && !again.include_usage && again.max_tokens == 1);
  FUZZ_ASSERT(again.has_max_completion_tokens == req.has_max_completion_tokens);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  check_callback(input);
  check_client_body(input);
  return 0;
}
