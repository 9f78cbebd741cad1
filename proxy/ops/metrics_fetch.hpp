#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "balancer/backend_address.hpp"
#include "proxy/core/asio.hpp"

namespace glm::proxy {

// One backend's GET /metrics, read whole into a buffer that is kept from one scrape to the next.
//
// A scrape is small but frequent (16 backends every 0.1 s is 160 a second of ~100 KB each), so
// it is read more cheaply than upstream_exchange reads a completion: the body goes straight into
// a string (no 8 KiB relay chunks), reads are up to 64 KiB (Beast's read size), the string and
// the read buffer keep their capacity between scrapes (no page faults from a heap that grows and
// shrinks), and the connection is a keep-alive one from the worker's upstream_pool, given back
// after a complete answer. One deadline bounds the scrape; every operation (connect, write, read)
// is armed with what is left of it.
//
// Not thread-safe: one scrape at a time, on the executor of the worker whose pool it uses.
class metrics_fetch {
 public:
  // Fetches into body(). Returns "" when a 2xx answer was read whole within `cap` bytes, else
  // the reason for glm_proxy_backend_scrape_errors_total: "connect", "timeout", "status",
  // "too_large" or "read". A body past the cap is refused whole (a cut line could read as a
  // smaller number).
  net::awaitable<std::string_view> get(const balancer::backend_address& to,
                                       std::chrono::steady_clock::time_point deadline,
                                       std::size_t cap);

  const std::string& body() const { return body_; }

  // The reason word of a transport error.
  static std::string_view reason_of(const error_code& ec);

 private:
  net::awaitable<error_code> connect(beast::tcp_stream& stream, const balancer::backend_address& to,
                                     std::chrono::steady_clock::time_point deadline);

  std::string body_;
  beast::flat_buffer buffer_;
};

}  // namespace glm::proxy
