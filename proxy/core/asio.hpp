#pragma once

// The Asio/Beast names every proxy/ file uses. Only proxy/ includes Asio.
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>

namespace glm::proxy {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

// Network outcomes are values: every awaited operation yields (error_code, ...) instead of
// throwing.
inline constexpr auto use_nothrow = net::as_tuple(net::use_awaitable);

// Seconds from the command line as a timer duration.
inline std::chrono::steady_clock::duration seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(s));
}

}  // namespace glm::proxy
