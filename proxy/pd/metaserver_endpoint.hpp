#pragma once

#include "proxy/core/asio.hpp"
#include "proxy/core/proxy_context.hpp"

namespace glm::proxy {

// POST /v1/metaserver, the layerwise mode's callback: a decoder's connector posts the KV blocks
// it allocated for one prompt (protocol::metaserver_callback) and waits for the answer, which
// comes once its request's prefill is done: 200 {"status":"ok"}, or 502 when the prefill failed
// or the request ended first. Bad input changes nothing: 400 (not a JSON object with a string
// request_id), 404 (no request waits for that id: unknown, or already finished; also outside the
// layerwise mode), 409 (that id has already called).
//
// Who may call it (the configured decoders and loopback) is front/'s business. Stateless: the
// waiting requests are in ctx.metaserver. Runs on the callback's session; the wait is bounded by
// the request's own life (its registration answers every callback when it ends).
class metaserver_endpoint {
 public:
  static net::awaitable<http::response<http::string_body>> serve(
      proxy_context& ctx, http::request<http::string_body>& req);
};

}  // namespace glm::proxy
