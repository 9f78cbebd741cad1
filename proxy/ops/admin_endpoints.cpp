#include "proxy/ops/admin_endpoints.hpp"

#include <spdlog/spdlog.h>

#include "protocol/instances_request.hpp"
#include "protocol/json_error.hpp"
#include "proxy/core/inflight_gate.hpp"
#include "proxy/core/json_response.hpp"
#include "proxy/ops/health_report.hpp"
#include "proxy/upstream/backend_call.hpp"

namespace glm::proxy {
namespace {

using balancer::backend_address;
using balancer::role;

std::string json_string(std::string_view s) {
  std::string out = "\"";
  protocol::json_error::escape_into(out, s);
  return out + "\"";
}

// The reference prints Python lists in its messages: ['a:1', 'b:2'].
std::string python_list(const std::vector<backend_address>& addrs) {
  std::string out = "[";
  for (std::size_t i = 0; i < addrs.size(); ++i) {
    out += (i ? ", '" : "'") + addrs[i].to_string() + "'";
  }
  return out + "]";
}

std::string json_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + json_string(items[i]);
  return out + "]";
}

// Active instances of a role, in the order they were added.
std::vector<backend_address> active(const balancer::balancer& lb, role kind) {
  std::vector<backend_address> out;
  for (const auto& i : lb.instances()) {
    if (i.kind == kind && !i.isolated) out.push_back(i.address);
  }
  return out;
}

std::vector<std::string> names(const std::vector<backend_address>& addrs) {
  std::vector<std::string> out;
  for (const auto& a : addrs) out.push_back(a.to_string());
  return out;
}

// Parses an /instances/* body into a role and addresses, or answers the 400 itself.
std::optional<admin_endpoints::response> parse_instances(std::string_view body, bool keep_alive,
                                                         role& kind,
                                                         std::vector<backend_address>& addrs) {
  protocol::instances_request req;
  if (auto error = protocol::instances_request::parse(body, req)) {
    return json_error_response(400, *error, keep_alive);
  }
  if (req.type == "prefill") {
    kind = role::prefill;
  } else if (req.type == "decode") {
    kind = role::decode;
  } else {
    return json_error_response(400,
                               "Instance type '" + req.type +
                                   "' is not supported. Only 'prefill' and 'decode' are allowed.",
                               keep_alive);
  }
  for (const auto& text : req.instances) {
    auto addr = backend_address::parse(text);
    if (!addr) {
      return json_error_response(400, "'" + text + "' is not a host:port address", keep_alive);
    }
    addrs.push_back(*addr);
  }
  return std::nullopt;
}

}  // namespace

admin_endpoints::response admin_endpoints::healthcheck(bool keep_alive) {
  return json_response(200, health_report(ctx_.lb), keep_alive);
}

admin_endpoints::response admin_endpoints::metrics(bool keep_alive) {
  response res{http::status::ok, 11};
  res.set(http::field::server, "glm-proxy");
  res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
  res.keep_alive(keep_alive);
  ctx_.stats.inflight_gate_state(ctx_.inflight.inflight(), ctx_.inflight.waiting());
  res.body() = ctx_.stats.serialize(ctx_.lb);
  res.prepare_payload();
  return res;
}

net::awaitable<admin_endpoints::response> admin_endpoints::models(bool keep_alive) {
  auto instances = active(ctx_.lb, role::prefill);
  auto decoders = active(ctx_.lb, role::decode);
  instances.insert(instances.end(), decoders.begin(), decoders.end());
  if (instances.empty()) {
    co_return json_response(503, R"({"error":"No available backend instances"})", keep_alive);
  }
  std::vector<std::string> failed;
  for (const auto& to : instances) {
    auto answer =
        co_await call_backend(to, http::verb::get, "/v1/models", {}, std::chrono::seconds(3));
    if (answer.ok()) co_return json_response(200, std::move(answer.body), keep_alive);
    spdlog::warn("/v1/models on {} failed: {}", to.to_string(),
                 answer.ec ? answer.ec.message() : "HTTP " + std::to_string(answer.status));
    failed.push_back(to.to_string());
  }
  co_return json_response(
      503,
      R"({"error":"All backend instances failed to serve /v1/models","failed":)" +
          json_list(failed) + "}",
      keep_alive);
}

net::awaitable<admin_endpoints::response> admin_endpoints::reset_prefix_cache(
    std::string_view target, bool keep_alive) {
  auto instances = active(ctx_.lb, role::prefill);
  auto decoders = active(ctx_.lb, role::decode);
  instances.insert(instances.end(), decoders.begin(), decoders.end());
  std::vector<std::string> failed;
  const auto prefillers = instances.size() - decoders.size();
  for (std::size_t k = 0; k < instances.size(); ++k) {
    const auto& to = instances[k];
    auto answer = co_await call_backend(to, http::verb::post, target, {},
                                        seconds(ctx_.cfg.connect_timeout + 10));
    if (!answer.ok()) {
      failed.push_back("http://" + to.to_string());
      continue;
    }
    // Its cache is empty now: cache_aware must stop predicting hits there. An instance whose
    // reset failed keeps its entries, since its cache was kept too.
    ctx_.lb.reset_prefix_cache(k < prefillers ? role::prefill : role::decode, to);
  }
  if (failed.empty()) {
    response res{http::status::ok, 11};
    res.keep_alive(keep_alive);
    res.prepare_payload();
    co_return res;
  }
  co_return json_response(500, R"({"failed":)" + json_list(failed) + "}", keep_alive);
}

admin_endpoints::response admin_endpoints::add_instances(std::string_view body, bool keep_alive) {
  role kind{};
  std::vector<backend_address> addrs;
  if (auto error = parse_instances(body, keep_alive, kind, addrs)) return std::move(*error);
  auto queued = ctx_.lb.add_pending(kind, addrs);
  spdlog::info("instances {} ({}) are waiting to be added", python_list(queued),
               balancer::to_string(kind));
  return json_response(
      200,
      R"({"message":)" +
          json_string("Instances " + python_list(queued) + " are waiting to be added.") +
          R"(,"current_prefill_instances":)" + json_list(names(active(ctx_.lb, role::prefill))) +
          R"(,"current_decode_instances":)" + json_list(names(active(ctx_.lb, role::decode))) + "}",
      keep_alive);
}

admin_endpoints::response admin_endpoints::remove_instances(std::string_view body,
                                                            bool keep_alive) {
  role kind{};
  std::vector<backend_address> addrs;
  if (auto error = parse_instances(body, keep_alive, kind, addrs)) return std::move(*error);
  auto result = ctx_.lb.remove(kind, addrs);
  if (result.removed.empty()) {
    return json_error_response(404,
                               "Instances " + python_list(addrs) + " are not " +
                                   std::string(to_string(kind)) + " instances",
                               keep_alive);
  }
  std::string message =
      "Instances " + python_list(result.removed) +
      (result.isolated ? " are isolated and waiting to be removed." : " are removed.");
  spdlog::info("{}", message);
  return json_response(
      200,
      R"({"message":)" + json_string(message) + R"(,"current_prefill_instances":)" +
          json_list(names(active(ctx_.lb, role::prefill))) + R"(,"current_decode_instances":)" +
          json_list(names(active(ctx_.lb, role::decode))) + "}",
      keep_alive);
}

}  // namespace glm::proxy
