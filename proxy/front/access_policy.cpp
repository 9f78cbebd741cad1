#include "proxy/front/access_policy.hpp"

#include "protocol/bearer_token.hpp"

namespace glm::proxy {

access_policy::verdict access_policy::inference(std::string_view authorization) const {
  if (api_key_.empty()) return verdict::allowed;
  return protocol::bearer_token::matches(authorization, api_key_) ? verdict::allowed
                                                                  : verdict::unauthorized;
}

access_policy::verdict access_policy::admin(std::string_view authorization,
                                            const net::ip::address& peer) const {
  if (!admin_token_.empty()) {
    // With a token, the token decides, from loopback too: a local process is not automatically
    // an operator.
    return protocol::bearer_token::matches(authorization, admin_token_) ? verdict::allowed
                                                                        : verdict::unauthorized;
  }
  return is_loopback(peer) ? verdict::allowed : verdict::forbidden;
}

bool access_policy::is_loopback(const net::ip::address& address) {
  if (address.is_v4()) return address.to_v4().is_loopback();
  const auto v6 = address.to_v6();
  if (v6.is_v4_mapped()) return net::ip::make_address_v4(net::ip::v4_mapped, v6).is_loopback();
  return v6.is_loopback();
}

}  // namespace glm::proxy
