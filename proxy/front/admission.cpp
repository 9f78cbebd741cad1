#include "proxy/front/admission.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>

#include "proxy/core/client_departure.hpp"

namespace glm::proxy {
namespace {

// A queue timeout beyond this is "wait as long as it takes"; it keeps the timer arithmetic finite.
constexpr double max_queue_seconds = 365.0 * 24 * 3600;

}  // namespace

net::awaitable<admission::result> admission::admit(proxy_context& ctx, tcp::socket& client,
                                                   bool keep_alive, access_record& record) {
  using namespace net::experimental::awaitable_operators;
  auto& gate = ctx.inflight;
  result out;
  // The common case, a free slot, costs one short lock and no coroutine.
  if (auto place = gate.try_acquire()) {
    out.place = std::move(*place);
    co_return out;
  }
  auto outcome = inflight_gate::outcome::full;
  if (ctx.cfg.queue_timeout > 0) {
    // Wait in line, but not for a client that has gone: its place in line goes to the next one.
    auto wait = seconds(std::min(ctx.cfg.queue_timeout, max_queue_seconds));
    auto waited = co_await (gate.acquire(wait) || client_departure::wait(client));
    if (waited.index() == 1) {
      ctx.stats.client_disconnect();
      record.end(request_ending::client_gone);
      out.refusal = answer::already_written(499, false);  // nginx's "client closed request"
      co_return out;
    }
    auto& admitted = std::get<0>(waited);
    if (admitted.result == inflight_gate::outcome::admitted) {
      out.place = std::move(admitted.held);
      co_return out;
    }
    outcome = admitted.result;
  }
  if (outcome == inflight_gate::outcome::timed_out) {
    out.refusal =
        answer::refusal(503, "no request slot came free within the queue timeout; retry later",
                        refusal_reason::queue_timeout, keep_alive);
  } else {
    out.refusal = answer::refusal(
        503,
        "too many requests in flight (limit " + std::to_string(gate.limit()) + "); retry later",
        refusal_reason::max_inflight, keep_alive);
  }
  out.refusal.response.set(http::field::retry_after, "1");
  co_return out;
}

}  // namespace glm::proxy
