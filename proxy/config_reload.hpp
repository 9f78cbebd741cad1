#pragma once

#include <functional>
#include <optional>
#include <string>

#include "balancer/balancer.hpp"
#include "proxy/config.hpp"

namespace glm::proxy {

// What SIGHUP does: reads the configuration again and applies what can change without a restart.
//
// - The instance lists: the re-read lists are the truth. Addresses that are neither in rotation
//   nor pending join as pending and are probed, as POST /instances/add does; instances in rotation
//   (or pending) that the lists no longer name are removed, or isolated until their requests end,
//   as POST /instances/remove does. So instances added at run time with /instances/add and missing
//   from the file go too.
// - The log level.
// Every other setting is only compared: a change is logged as needing a restart, since worker
// threads read the running config without locks. A configuration that does not parse changes
// nothing. Nothing here exits the process.
//
// Logs what it did (at every log level, with log_always). Not thread-safe: call from one thread
// (the signal handler's). The balancer is thread-safe and must outlive this object.
class config_reload {
 public:
  // Fills the config from the same sources as at start; returns the usage error instead, if any.
  using reader = std::function<std::optional<std::string>(config& out)>;

  // `running` is the configuration the process started with; `read` may be empty (no --config:
  // there is nothing to reload).
  config_reload(const config& running, balancer::balancer& lb, reader read);

  // Re-reads and applies. Returns false when nothing could be read (no --config, or an error),
  // true when the new configuration was applied (which may change nothing).
  bool reload();

 private:
  void apply_instances(balancer::role kind, const std::vector<balancer::backend_address>& want);
  void report_restart_settings(const config& next) const;

  const config& running_;
  balancer::balancer& lb_;
  reader read_;
  std::string log_level_;  // in effect: the running config's until a reload changes it
};

}  // namespace glm::proxy
