#include "proxy/front/decoder_peers.hpp"

#include <string>
#include <vector>

#include "proxy/front/access_policy.hpp"

namespace glm::proxy {
namespace {

// IPv4 clients of a dual-stack listener show up as ::ffff:a.b.c.d.
net::ip::address plain(const net::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6());
  }
  return a;
}

}  // namespace

net::awaitable<bool> decoder_peers::admits(const balancer::balancer& lb, net::ip::address peer) {
  if (access_policy::is_loopback(peer)) co_return true;
  peer = plain(peer);
  std::vector<std::string> names;
  for (const auto& i : lb.instances()) {
    if (i.kind != balancer::role::decode) continue;
    error_code ec;
    auto literal = net::ip::make_address(i.address.host, ec);
    if (!ec) {
      if (plain(literal) == peer) co_return true;
    } else {
      names.push_back(i.address.host);
    }
  }
  if (names.empty()) co_return false;
  tcp::resolver resolver(co_await net::this_coro::executor);
  for (const auto& name : names) {
    auto [ec, results] = co_await resolver.async_resolve(name, "", use_nothrow);
    if (ec) continue;
    for (const auto& r : results) {
      if (plain(r.endpoint().address()) == peer) co_return true;
    }
  }
  co_return false;
}

}  // namespace glm::proxy
