#pragma once

#include "balancer/balancer.hpp"

namespace glm::proxy {

// Logs (WARNING) the ejections the balancer recorded since the last call; the balancer does no
// I/O, so it only records them. Called right after a request reports a failure, so an ejection
// is logged before the requests it causes to be refused, and by the prober, which sees the
// re-ejections after failed probes. Each ejection is taken, and logged, once. Thread-safe.
void log_ejections(balancer::balancer& lb, int eject_after);

}  // namespace glm::proxy
