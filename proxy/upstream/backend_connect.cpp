#include "proxy/upstream/backend_connect.hpp"

#include <string>

namespace glm::proxy {

net::awaitable<error_code> backend_connect(beast::tcp_stream& stream,
                                           const balancer::backend_address& to) {
  error_code ec;
  auto ip = net::ip::make_address(to.host, ec);
  if (!ec) {
    auto [cec] = co_await stream.async_connect(tcp::endpoint(ip, to.port), use_nothrow);
    co_return cec;
  }
  tcp::resolver resolver(stream.get_executor());
  auto [rec, results] =
      co_await resolver.async_resolve(to.host, std::to_string(to.port), use_nothrow);
  if (rec) co_return rec;
  auto [cec, endpoint] = co_await stream.async_connect(results, use_nothrow);
  co_return cec;
}

}  // namespace glm::proxy
