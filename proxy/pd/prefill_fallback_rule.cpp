#include "proxy/pd/prefill_fallback_rule.hpp"

#include <spdlog/spdlog.h>

namespace glm::proxy {

bool prefill_fallback_rule::applies(config::prefill_fallback mode, const call_result& prefill) {
  if (mode != config::prefill_fallback::decode) return false;
  switch (prefill.how) {
    case call_result::ending::no_instance:
      return true;
    case call_result::ending::failed:
      return prefill.failure && prefill.failure->instance_fault();
    case call_result::ending::answered:
    case call_result::ending::client_gone:
    case call_result::ending::drained:
      return false;
  }
  return false;
}

void prefill_fallback_rule::note(proxy_context& ctx, const call_result& prefill,
                                 std::string_view request_id) {
  ctx.stats.prefill_fallback();
  if (prefill.how == call_result::ending::no_instance) {
    spdlog::info("[{}] no prefill instance is available; the decoder prefills the request itself",
                 request_id);
  } else {
    spdlog::info("[{}] prefill failed ({} on {}); the decoder prefills the request itself",
                 request_id, prefill.failure->log_word(), prefill.failure->backend());
  }
}

}  // namespace glm::proxy
