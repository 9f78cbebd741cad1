#include "proxy/core/ejection_log.hpp"

#include <spdlog/spdlog.h>

#include <string>

namespace glm::proxy {

void log_ejections(balancer::balancer& lb, int eject_after) {
  for (const auto& e : lb.take_ejections()) {
    spdlog::warn("{} instance {} ejected for {:.3g} s{}", balancer::to_string(e.kind),
                 e.address.to_string(), std::chrono::duration<double>(e.duration).count(),
                 e.after_probe
                     ? ": its probe failed"
                     : " after " + std::to_string(eject_after) + " consecutive failed attempts");
  }
}

}  // namespace glm::proxy
