#include "proxy/upstream/backend_call.hpp"

#include "proxy/upstream/upstream_exchange.hpp"

namespace glm::proxy {

net::awaitable<backend_answer> call_backend(const balancer::backend_address& to, http::verb method,
                                            std::string_view target, std::string_view body,
                                            std::chrono::steady_clock::duration timeout) {
  backend_answer answer;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  upstream_exchange up(co_await net::this_coro::executor);
  answer.ec = co_await up.connect(to, timeout);
  if (answer.ec) co_return answer;
  upstream_exchange::request req{method, target, 11};
  req.set(http::field::host, to.to_string());
  if (!body.empty()) req.set(http::field::content_type, "application/json");
  req.body() = {body.data(), body.size()};
  req.prepare_payload();
  answer.ec = co_await up.send(req, deadline - std::chrono::steady_clock::now());
  if (!answer.ec) answer.ec = co_await up.read_header(deadline - std::chrono::steady_clock::now());
  if (!answer.ec) answer.ec = co_await up.read_body(answer.body, 1 << 20, deadline);
  if (!answer.ec) answer.status = up.status();
  co_return answer;
}

}  // namespace glm::proxy
