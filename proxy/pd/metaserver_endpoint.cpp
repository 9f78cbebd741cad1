#include "proxy/pd/metaserver_endpoint.hpp"

#include <spdlog/spdlog.h>

#include "proxy/core/json_response.hpp"

namespace glm::proxy {
namespace {

// An id is the decoder's text: shown in an answer only this long, and never logged raw.
constexpr std::size_t shown_id_chars = 160;

std::string shown(std::string_view id) {
  return id.size() <= shown_id_chars ? std::string(id)
                                     : std::string(id.substr(0, shown_id_chars)) + "...";
}

}  // namespace

net::awaitable<http::response<http::string_body>> metaserver_endpoint::serve(
    proxy_context& ctx, http::request<http::string_body>& req) {
  const bool keep_alive = req.keep_alive();
  if (ctx.cfg.mode != pd_mode::layerwise) {
    co_return json_error_response(404, "/v1/metaserver is served with --pd-mode layerwise only",
                                  keep_alive);
  }
  protocol::metaserver_callback callback;
  if (auto error = protocol::metaserver_callback::parse(req.body(), callback)) {
    co_return json_error_response(400, *error, keep_alive);
  }
  const std::string id = callback.request_id;
  auto delivered = ctx.metaserver.deliver(std::move(callback), co_await net::this_coro::executor);
  using result = metaserver_registry::delivery::result;
  if (delivered.how == result::unknown) {
    co_return json_error_response(
        404, "no request waits for request_id " + shown(id) + " (unknown, or already finished)",
        keep_alive);
  }
  if (delivered.how == result::duplicate) {
    co_return json_error_response(409, "request_id " + shown(id) + " has already called back",
                                  keep_alive);
  }
  ctx.stats.metaserver_wait(std::chrono::duration<double>(delivered.waited).count());
  auto outcome = co_await metaserver_registry::answer_of(std::move(delivered.answer));
  if (outcome == metaserver_registry::outcome::prefilled) {
    co_return json_response(200, R"({"status":"ok"})", keep_alive);
  }
  co_return json_error_response(502, "the prefill of this request failed, or the request ended",
                                keep_alive);
}

}  // namespace glm::proxy
