#include "proxy/core/json_response.hpp"

#include "protocol/json_error.hpp"
#include "proxy/core/answer.hpp"

namespace glm::proxy {

http::response<http::string_body> json_response(unsigned status, std::string body,
                                                bool keep_alive) {
  http::response<http::string_body> res{static_cast<http::status>(status), 11};
  res.set(http::field::server, "glm-proxy");
  res.set(http::field::content_type, "application/json");
  res.keep_alive(keep_alive);
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

http::response<http::string_body> json_error_response(unsigned status, std::string_view message,
                                                      bool keep_alive) {
  return json_response(status,
                       protocol::json_error::make(message, protocol::json_error::type_for(status),
                                                  static_cast<int>(status)),
                       keep_alive);
}

answer answer::refusal(unsigned status, std::string_view message, refusal_reason reason,
                       bool keep_alive) {
  answer a = reply(json_error_response(status, message, keep_alive));
  a.refused = reason;
  return a;
}

}  // namespace glm::proxy
