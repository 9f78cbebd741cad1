#pragma once

#include <string>
#include <string_view>

namespace glm::protocol {

// Error bodies in vLLM's shape, so OpenAI clients parse them:
// {"error":{"message":"...","type":"BadRequestError","param":null,"code":400}}
class json_error {
 public:
  // `message` is escaped as a JSON string (quotes, backslashes, control bytes).
  static std::string make(std::string_view message, std::string_view type, int code);

  // The vLLM error type for an HTTP status: 400 BadRequestError, 401 AuthenticationError, 403
  // PermissionDeniedError, 404 NotFoundError, 405 MethodNotAllowed, 413 RequestEntityTooLarge,
  // 503 ServiceUnavailableError, 504 GatewayTimeout, other 4xx BadRequestError, other 5xx
  // InternalServerError. 401 and 403 take the OpenAI client's exception names, as 400 and 404 do.
  static std::string_view type_for(int status);

  // An upstream error body made fit for a client: a body that is already a JSON object passes
  // unchanged; anything else (HTML, plain text, empty) becomes make(text, type_for(status),
  // status).
  static std::string wrap_upstream(std::string_view body, int status);

  // Appends `s` to `out` as the inside of a JSON string literal (without the quotes).
  static void escape_into(std::string& out, std::string_view s);
};

}  // namespace glm::protocol
