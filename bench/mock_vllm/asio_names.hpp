#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>

// The short names the mock's session files use, in one place.
namespace glm::mock {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

// Completion token of every operation whose error is a value: co_await yields (ec, ...).
inline constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

}  // namespace glm::mock
