#pragma once

#include <string_view>

#include "proxy/core/asio.hpp"

namespace glm::proxy {

// Who may call what. The inference endpoints (/v1/completions, /v1/chat/completions, /v1/models)
// want "Authorization: Bearer <api_key>" when an API key is configured. The operations endpoints
// (/instances/add, /instances/remove, /reset_prefix_cache) want "Bearer <admin_token>" when a
// token is configured, and otherwise answer loopback clients only: they change what the proxy
// sends traffic to, so an open default would let anyone on the network redirect it.
// /healthcheck and /metrics are always open (probes and Prometheus carry no tokens).
//
// Tokens are compared in constant time. Stateless apart from the two strings it refers to, which
// must outlive it; safe to use from any thread.
class access_policy {
 public:
  enum class verdict {
    allowed,
    unauthorized,  // 401: credentials missing or wrong
    forbidden,     // 403: no credentials can help (a remote client, no admin token configured)
  };

  access_policy(std::string_view api_key, std::string_view admin_token)
      : api_key_(api_key), admin_token_(admin_token) {}

  // `authorization` is the request's Authorization header value, empty when absent.
  verdict inference(std::string_view authorization) const;
  verdict admin(std::string_view authorization, const net::ip::address& peer) const;

  // 127.0.0.0/8, ::1, and IPv4 loopback mapped into IPv6 (::ffff:127.x.y.z), which a
  // dual-stack listener on "::" reports for IPv4 clients.
  static bool is_loopback(const net::ip::address& address);

 private:
  std::string_view api_key_;
  std::string_view admin_token_;
};

}  // namespace glm::proxy
