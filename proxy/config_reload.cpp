#include "proxy/config_reload.hpp"

#include <spdlog/spdlog.h>

#include <sstream>
#include <utility>
#include <vector>

#include "proxy/logging.hpp"

namespace glm::proxy {
namespace {

using balancer::backend_address;
using balancer::role;

// The messages of /instances/add and /instances/remove print Python lists, as the reference does.
std::string python_list(const std::vector<backend_address>& addrs) {
  std::string out = "[";
  for (std::size_t i = 0; i < addrs.size(); ++i) {
    out += (i ? ", '" : "'") + addrs[i].to_string() + "'";
  }
  return out + "]";
}

bool contains(const std::vector<backend_address>& list, const backend_address& a) {
  for (const auto& b : list) {
    if (b.same_as(a)) return true;
  }
  return false;
}

std::string text(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

std::string addresses(const std::vector<backend_address>& addrs) {
  std::string out;
  for (const auto& a : addrs) out += (out.empty() ? "" : " ") + a.to_string();
  return out;
}

// The settings a running process cannot change, by flag name, as text. Secrets are compared but
// never logged (see is_secret).
std::vector<std::pair<const char*, std::string>> restart_settings(const config& c) {
  return {
      {"host", c.host},
      {"port", std::to_string(c.port)},
      {"workers", std::to_string(c.workers)},
      {"max-retries", std::to_string(c.max_retries)},
      {"retry-delay", text(c.retry_delay)},
      {"max-waiting-retries", std::to_string(c.max_waiting_retries)},
      {"waiting-retry-interval", text(c.waiting_retry_interval)},
      {"log-format", c.log_format},
      {"connect-timeout", text(c.connect_timeout)},
      {"prefill-timeout", text(c.prefill_timeout)},
      {"stream-idle-timeout", text(c.stream_idle_timeout)},
      {"client-write-timeout", text(c.client_write_timeout)},
      {"header-timeout", text(c.header_timeout)},
      {"drain-timeout", text(c.drain_timeout)},
      {"max-body-bytes", std::to_string(c.max_body_bytes)},
      {"max-connections", std::to_string(c.max_connections)},
      {"max-inflight", std::to_string(c.max_inflight)},
      {"queue-timeout", text(c.queue_timeout)},
      {"eject-after", std::to_string(c.eject_after)},
      {"eject-seconds", text(c.eject_seconds)},
      {"reuse-port", c.reuse_port ? "true" : "false"},
      {"prefill-policy", std::string(balancer::to_string(c.routing.prefill_policy))},
      {"decode-policy", std::string(balancer::to_string(c.routing.decode_policy))},
      {"cache-threshold", text(c.routing.cache_threshold)},
      {"cache-balance-abs-threshold", text(c.routing.cache_balance_abs_threshold)},
      {"cache-balance-rel-threshold", text(c.routing.cache_balance_rel_threshold)},
      {"cache-max-entries", std::to_string(c.routing.cache_max_entries)},
      {"hash-balance-factor", text(c.routing.hash_balance_factor)},
      {"max-prefill-answer-bytes", std::to_string(c.max_prefill_answer_bytes)},
      {"scrape-interval", text(c.scrape_interval)},
      {"kv-high", text(c.kv_high)},
      {"max-metrics-bytes", std::to_string(c.max_metrics_bytes)},
      {"prefill-fallback", c.fallback == config::prefill_fallback::decode ? "decode" : "off"},
      {"pd-mode", c.mode == pd_mode::layerwise ? "layerwise" : "standard"},
      {"metaserver-url", c.metaserver_url},
      {"metaserver-timeout", text(c.metaserver_timeout)},
      {"api-key", c.api_key},
      {"admin-token", c.admin_token},
  };
}

bool is_secret(std::string_view name) {
  return name == "api-key" || name == "admin-token";
}

}  // namespace

config_reload::config_reload(const config& running, balancer::balancer& lb, reader read)
    : running_(running), lb_(lb), read_(std::move(read)), log_level_(running.log_level) {}

bool config_reload::reload() {
  if (!read_ || running_.config_file.empty()) {
    log_always("SIGHUP: no --config file was given, so there is nothing to reload");
    return false;
  }
  config next;
  if (auto error = read_(next)) {
    spdlog::error("SIGHUP: {} not reloaded, the running configuration stays: {}",
                  running_.config_file, *error);
    return false;
  }
  log_always(fmt::format("SIGHUP: reloading {}: prefillers=[{}] decoders=[{}] log_level={}",
                         running_.config_file, addresses(next.prefillers), addresses(next.decoders),
                         next.log_level));
  apply_instances(role::prefill, next.prefillers);
  apply_instances(role::decode, next.decoders);
  if (next.log_level != log_level_) {
    set_log_level(next.log_level);
    log_always("SIGHUP: log level " + log_level_ + " -> " + next.log_level);
    log_level_ = next.log_level;
  }
  report_restart_settings(next);
  return true;
}

void config_reload::apply_instances(role kind, const std::vector<backend_address>& want) {
  std::vector<backend_address> present;  // in rotation (ejected included) or pending
  for (const auto& i : lb_.instances()) {
    if (i.kind == kind && !i.isolated) present.push_back(i.address);
  }
  for (const auto& a : lb_.pending(kind)) present.push_back(a);

  std::vector<backend_address> add, drop;
  for (const auto& a : want) {
    if (!contains(present, a) && !contains(add, a)) add.push_back(a);
  }
  for (const auto& a : present) {
    if (!contains(want, a)) drop.push_back(a);
  }
  std::string_view name = balancer::to_string(kind);
  if (!add.empty()) {
    auto queued = lb_.add_pending(kind, add);
    log_always(
        fmt::format("SIGHUP: {} instances {} are waiting to be added", name, python_list(queued)));
  }
  if (!drop.empty()) {
    auto result = lb_.remove(kind, drop);
    if (!result.removed.empty()) {
      log_always(
          fmt::format("SIGHUP: {} instances {} {}", name, python_list(result.removed),
                      result.isolated ? "are isolated and waiting to be removed" : "are removed"));
    }
    std::vector<backend_address> left;
    for (const auto& a : drop) {
      if (!contains(result.removed, a)) left.push_back(a);
    }
    // Pending instances the balancer could not take back: they stay until their probes end.
    if (!left.empty()) {
      spdlog::warn("SIGHUP: {} instances {} could not be removed now", name, python_list(left));
    }
  }
  if (add.empty() && drop.empty()) {
    log_always(fmt::format("SIGHUP: {} instances unchanged", name));
  }
}

void config_reload::report_restart_settings(const config& next) const {
  auto before = restart_settings(running_);
  auto after = restart_settings(next);
  std::string changes;
  for (std::size_t i = 0; i < before.size(); ++i) {
    if (before[i].second == after[i].second) continue;
    changes += changes.empty() ? "" : ", ";
    changes += before[i].first;
    if (!is_secret(before[i].first)) {
      changes += " " + before[i].second + " -> " + after[i].second;
    }
  }
  if (!changes.empty())
    log_always("SIGHUP: these settings need a restart to take effect: " + changes);
}

}  // namespace glm::proxy
