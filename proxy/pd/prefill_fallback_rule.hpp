#pragma once

#include <string_view>

#include "proxy/config.hpp"
#include "proxy/core/proxy_context.hpp"
#include "proxy/pd/backend_attempts.hpp"

namespace glm::proxy {

// --prefill-fallback decode: when no prefiller can serve a request, the decoder prefills it
// itself. The client's body goes to the chosen decoder unchanged (no kv_transfer_params), which
// vLLM then serves like any plain request: slower for the first token, but served.
//
// It applies when the prefill step ended with no instance (every prefiller ejected or removed),
// or failed after its retries with a fault of the prefiller: a 5xx, a timeout, a connection
// error, or a 2xx answer that cannot be used. A prefiller's 4xx is the request's own fault, which
// a decoder would give too: it stays the client's answer. Nothing applies once the client left
// or the drain ran out.
//
// Stateless; safe from any thread.
struct prefill_fallback_rule {
  static bool applies(config::prefill_fallback mode, const call_result& prefill);
  // Counts it (glm_proxy_prefill_fallbacks_total) and logs why, with the request's id.
  static void note(proxy_context& ctx, const call_result& prefill, std::string_view request_id);
  // The access line's prefill_route of a request decoded without a prefill.
  static constexpr std::string_view route = "fallback_decode";
};

}  // namespace glm::proxy
