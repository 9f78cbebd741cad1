#include "proxy/upstream/backend_failure.hpp"

#include "protocol/json_error.hpp"

namespace glm::proxy {

failure_kind failure_kind_of(const error_code& ec) {
  if (ec == beast::error::timeout) return failure_kind::timeout;
  if (ec == net::error::connection_refused) return failure_kind::refused;
  if (ec == net::error::connection_reset || ec == http::error::end_of_stream ||
      ec == net::error::eof || ec == http::error::partial_message) {
    return failure_kind::reset;
  }
  return failure_kind::other;
}

backend_failure::backend_failure(balancer::role role, const balancer::backend_address& backend,
                                 failure_kind kind)
    : role_(role), backend_(backend.to_string()), kind_(kind) {}

backend_failure backend_failure::transport(balancer::role role,
                                           const balancer::backend_address& backend,
                                           error_code ec) {
  backend_failure f(role, backend, failure_kind_of(ec));
  f.ec_ = ec;
  return f;
}

backend_failure backend_failure::status(balancer::role role,
                                        const balancer::backend_address& backend, unsigned status,
                                        std::string body) {
  backend_failure f(role, backend, failure_kind::status);
  f.status_ = status;
  f.text_ = std::move(body);
  return f;
}

backend_failure backend_failure::bad_answer(balancer::role role,
                                            const balancer::backend_address& backend,
                                            std::string detail) {
  backend_failure f(role, backend, failure_kind::bad_answer);
  f.text_ = std::move(detail);
  return f;
}

unsigned backend_failure::client_status() const {
  if (kind_ == failure_kind::status) return status_;
  return kind_ == failure_kind::timeout ? 504 : 502;
}

std::string backend_failure::client_body() const {
  if (kind_ != failure_kind::status) return {};
  return protocol::json_error::wrap_upstream(text_, static_cast<int>(status_));
}

std::string backend_failure::client_message() const {
  std::string out = std::string(balancer::to_string(role_)) + " instance " + backend_;
  switch (kind_) {
    case failure_kind::status:
      return out + " answered HTTP " + std::to_string(status_);
    case failure_kind::bad_answer:
      return out + " answered: " + text_;
    case failure_kind::timeout:
      return out + " timed out: " + ec_.message();
    default:
      return out + " failed: " + ec_.message();
  }
}

std::string backend_failure::log_word() const {
  switch (kind_) {
    case failure_kind::status:
      return "HTTP " + std::to_string(status_);
    case failure_kind::bad_answer:
      return text_;
    default:
      return ec_.message();
  }
}

request_ending backend_failure::ending() const {
  return kind_ == failure_kind::timeout ? request_ending::timeout : request_ending::upstream_error;
}

bool backend_failure::retryable() const {
  return !(kind_ == failure_kind::status && status_ == 400);
}

bool backend_failure::instance_fault() const {
  return !(kind_ == failure_kind::status && status_ / 100 == 4);
}

}  // namespace glm::proxy
