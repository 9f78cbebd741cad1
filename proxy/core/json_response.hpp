#pragma once

#include <string>
#include <string_view>

#include "proxy/core/asio.hpp"

namespace glm::proxy {

// A complete JSON answer with Content-Length, ready for http::async_write.
http::response<http::string_body> json_response(unsigned status, std::string body, bool keep_alive);

// An error answer in vLLM's shape: {"error":{"message":...,"type":...,"param":null,"code":...}}.
http::response<http::string_body> json_error_response(unsigned status, std::string_view message,
                                                      bool keep_alive);

}  // namespace glm::proxy
