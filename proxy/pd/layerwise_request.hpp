#pragma once

#include <optional>

#include "protocol/client_request.hpp"
#include "proxy/core/asio.hpp"
#include "proxy/pd/pd_request.hpp"

namespace glm::proxy {

// One round of a completion request in vllm-ascend's layerwise PD mode (--pd-mode layerwise),
// where the prefiller pushes the KV cache to the decoder layer by layer, so the decoder must be
// asked first:
//
//   1. a decoder is chosen (decode policy) and sent the client's body with
//      kv_transfer_params {"do_remote_decode":false,"do_remote_prefill":true,"metaserver":URL}
//      and an X-Request-Id made for this attempt (the client's id plus a random suffix: unique
//      per backend request even when a client reuses its id; a retry on another decoder gets a
//      new one); the vLLM ids it will report (cmpl-<id>-<i> per prompt, chatcmpl-<id>) are
//      registered in the metaserver registry; once they have all called, no retry;
//   2. meanwhile, once every prompt has called /v1/metaserver back (metaserver_endpoint), a
//      prefiller is chosen (prefill policy) and sent one prefill whose kv_transfer_params are
//      the posted objects (batched for several prompts), with the normal retries; the callbacks
//      are then answered 200, or 502 if it failed;
//   3. the decoder's answer is relayed by pd_request, exactly as in the standard mode.
//
// The decode call and the callbacks-then-prefill run side by side; whichever fails first ends
// the other: a failed prefill or no callbacks within --metaserver-timeout closes the decode
// connection (the decoder aborts and frees its blocks, which the reference leaves waiting) and
// the client gets the error (its status, as the stream has not begun). A client that leaves, or
// the drain's end, stops both.
//
// Lifetime: one round on the request's frame; `request` outlives it. Every piece of load is
// held by RAII here or in `request` (lease, registration, upstream connections).
class layerwise_request {
 public:
  explicit layerwise_request(pd_request& request) : pd_(request) {}

  // As pd_request::round: answers the client (or leaves it to the recompute that follows).
  net::awaitable<pd_request::decode_end> round(const protocol::client_request& body,
                                               std::optional<refusal_reason>& refused);

 private:
  pd_request& pd_;
};

}  // namespace glm::proxy
