#include "proxy/ops/health_report.hpp"

#include <cstdio>

#include "protocol/json_error.hpp"

namespace glm::proxy {
namespace {

using balancer::role;

std::string_view state_of(const balancer::instance_snapshot& s) {
  if (s.isolated) return "isolated";
  if (s.probing) return "probing";
  if (s.ejected) return "ejected";
  return "active";
}

// ,"engine":{...}: what the instance's /metrics last reported, while scraping is on.
std::string engine_of(const balancer::instance_snapshot& s) {
  std::string out = R"(,"engine":{"up":)";
  out += s.engine_up ? "true" : "false";
  if (s.engine) {
    char text[160];
    std::snprintf(text, sizeof text,
                  R"(,"running":%llu,"waiting":%llu,"kv_usage":%.4f,"age_seconds":%.3f,)"
                  R"("fresh":%s,"saturated":%s)",
                  static_cast<unsigned long long>(s.engine->running),
                  static_cast<unsigned long long>(s.engine->waiting), s.engine->kv_usage,
                  s.engine_age_seconds, s.engine_fresh ? "true" : "false",
                  s.engine_saturated ? "true" : "false");
    out += text;
  }
  out += '}';
  return out;
}

void append_instance(std::string& out, role kind, const balancer::backend_address& address,
                     std::string_view state, std::uint64_t inflight, int consecutive_failures,
                     std::uint64_t ejections, double retry_in_seconds,
                     std::string_view engine = {}) {
  if (out.back() != '[') out += ',';
  out += R"({"role":")";
  out += balancer::to_string(kind);
  out += R"(","address":")";
  protocol::json_error::escape_into(out, address.to_string());
  out += R"(","state":")";
  out += state;
  out += R"(","inflight":)" + std::to_string(inflight);
  out += R"(,"consecutive_failures":)" + std::to_string(consecutive_failures);
  out += R"(,"ejections":)" + std::to_string(ejections);
  if (state == "ejected") {
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%.3f", retry_in_seconds);
    out += R"(,"retry_in_seconds":)";
    out += seconds;
  }
  out += engine;
  out += '}';
}

}  // namespace

std::string health_report(const balancer::balancer& lb) {
  // One snapshot for the instance list, so states and counts agree with each other.
  const auto instances = lb.instances();
  const bool scraping = lb.engine_options().interval.count() > 0;
  std::string list = "[";
  bool in_rotation[2] = {false, false};
  for (const auto& s : instances) {
    const auto state = state_of(s);
    if (state == "active") in_rotation[s.kind == role::prefill ? 0 : 1] = true;
    append_instance(list, s.kind, s.address, state, s.inflight, s.consecutive_failures,
                    s.ejections_total, s.eject_seconds_left, scraping ? engine_of(s) : "");
  }
  for (role kind : {role::prefill, role::decode}) {
    for (const auto& a : lb.pending(kind)) append_instance(list, kind, a, "pending", 0, 0, 0, 0);
  }
  list += ']';

  std::size_t counts[2] = {0, 0};
  for (const auto& s : instances) {
    if (!s.isolated) ++counts[s.kind == role::prefill ? 0 : 1];
  }
  return R"({"status":")" + std::string(in_rotation[0] && in_rotation[1] ? "ok" : "degraded") +
         R"(","prefill_instances":)" + std::to_string(counts[0]) + R"(,"decode_instances":)" +
         std::to_string(counts[1]) + R"(,"request_num":)" + std::to_string(lb.request_num()) +
         R"(,"prefill_policy":")" + std::string(balancer::to_string(lb.routing().prefill_policy)) +
         R"(","decode_policy":")" + std::string(balancer::to_string(lb.routing().decode_policy)) +
         R"(","instances":)" + list + "}";
}

}  // namespace glm::proxy
