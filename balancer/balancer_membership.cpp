// balancer's membership and probe schedule: /instances/add and /instances/remove, and the probes
// that bring pending and ejected instances into rotation. Kept apart from the choice
// (balancer.cpp) because the two change for different reasons.
#include <algorithm>
#include <utility>

#include "balancer/balancer.hpp"

namespace glm::balancer {

std::vector<backend_address> balancer::add_pending(role kind,
                                                   const std::vector<backend_address>& addrs) {
  const auto now = now_();
  std::lock_guard lock(mutex_);
  std::vector<backend_address> queued;
  for (const auto& a : addrs) {
    // An isolated instance is on its way out, so adding its address back is a fresh instance.
    const bool known = std::any_of(instances_.begin(), instances_.end(), [&](const instance& i) {
      return i.kind == kind && i.state != lifecycle::isolated && i.address.same_as(a);
    });
    if (known) continue;
    auto i = make_instance(kind, a, lifecycle::pending);
    i.next_probe = now;
    instances_.push_back(std::move(i));
    queued.push_back(a);
  }
  return queued;
}

std::vector<backend_address> balancer::pending(role kind) const {
  std::lock_guard lock(mutex_);
  std::vector<backend_address> out;
  for (const auto& i : instances_) {
    if (i.kind == kind && i.state == lifecycle::pending) out.push_back(i.address);
  }
  return out;
}

std::vector<probe_task> balancer::due_probes() {
  const auto now = now_();
  std::lock_guard lock(mutex_);
  std::vector<probe_task> pending_tasks;
  std::vector<probe_task> ejected_tasks;
  for (auto& i : instances_) {
    if (i.next_probe > now) continue;
    if (i.state == lifecycle::pending) {
      i.next_probe = time_point::max();  // under way: not due again until its result is in
      pending_tasks.push_back({i.id, i.kind, i.address, false});
    } else if (i.state == lifecycle::ejected) {
      i.state = *transition::probe_started(i.state);
      ejected_tasks.push_back({i.id, i.kind, i.address, true});
    }
  }
  // Pending instances first, as before the two lists were merged.
  pending_tasks.insert(pending_tasks.end(), ejected_tasks.begin(), ejected_tasks.end());
  return pending_tasks;
}

void balancer::probe_result(std::uint64_t pending_id, bool ok) {
  const auto now = now_();
  std::lock_guard lock(mutex_);
  auto it = std::find_if(instances_.begin(), instances_.end(),
                         [pending_id](const instance& i) { return i.id == pending_id; });
  // Gone, or no probe of it is under way (isolated meanwhile: it goes when its requests end).
  if (it == instances_.end()) return;
  if (it->state == lifecycle::pending) {
    if (ok) {
      // Moved last, so it is listed after every instance that was already serving.
      instance i = std::move(*it);
      instances_.erase(it);
      i.state = lifecycle::active;
      i.consecutive_failures = 0;
      instances_.push_back(std::move(i));
      return;
    }
    if (++it->consecutive_failures >= opts_.max_waiting_retries) {
      instances_.erase(it);
      return;
    }
    it->next_probe = now + opts_.waiting_retry_interval;
    return;
  }
  if (it->state != lifecycle::probing) return;
  if (ok) {
    it->state = *transition::probe_ok(it->state);
    it->consecutive_failures = 0;
    it->backoff.back(now);
  } else {
    ++it->consecutive_failures;
    eject(*it, now, true);
  }
}

std::optional<std::chrono::steady_clock::time_point> balancer::next_probe_time() const {
  std::lock_guard lock(mutex_);
  std::optional<time_point> next;
  for (const auto& i : instances_) {
    const bool waiting = (i.state == lifecycle::pending && i.next_probe != time_point::max()) ||
                         i.state == lifecycle::ejected;
    if (!waiting) continue;
    if (!next || i.next_probe < *next) next = i.next_probe;
  }
  return next;
}

balancer::remove_result balancer::remove(role kind, const std::vector<backend_address>& addrs) {
  std::lock_guard lock(mutex_);
  remove_result result;
  const auto named = [&](const instance& i) {
    return i.kind == kind && std::any_of(addrs.begin(), addrs.end(), [&](const backend_address& a) {
             return i.address.same_as(a);
           });
  };
  // A pending instance (added, not yet probed in) carries no request: it goes at once, so a
  // mistyped /instances/add can be taken back. A probe of it still under way finds no instance
  // and its result is ignored.
  std::erase_if(instances_, [&](const instance& i) {
    if (i.state != lifecycle::pending || !named(i)) return false;
    result.removed.push_back(i.address);
    return true;
  });
  const std::size_t cancelled = result.removed.size();
  for (auto& i : instances_) {
    if (!named(i)) continue;
    const auto next = transition::isolate(i.state);
    if (!next) continue;
    i.state = *next;
    if (i.index) i.index->clear();
    result.removed.push_back(i.address);
  }
  // Erasing an instance a lease still holds would be safe (its release finds nothing), but the
  // reference answers "isolated" while requests are in flight, and keeping the instance keeps the
  // load those requests still carry visible in /metrics until they drain.
  result.isolated = request_num_ > 0 && result.removed.size() > cancelled;
  if (request_num_ == 0) {
    std::erase_if(instances_, [](const instance& i) { return i.state == lifecycle::isolated; });
  }
  return result;
}

}  // namespace glm::balancer
