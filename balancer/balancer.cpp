#include "balancer/balancer.hpp"

#include <algorithm>
#include <utility>

namespace glm::balancer {

balancer::balancer(const std::vector<backend_address>& prefillers,
                   const std::vector<backend_address>& decoders, options opts, clock now)
    : opts_(opts), now_(std::move(now)) {
  instances_.reserve(prefillers.size() + decoders.size());
  for (const auto& a : prefillers) instances_.push_back({next_id_++, role::prefill, a});
  for (const auto& a : decoders) instances_.push_back({next_id_++, role::decode, a});
}

double balancer::prefill_score(std::size_t body_bytes) {
  return static_cast<double>(body_bytes) / 4.0 * 0.0345 + 120.0745;
}

double balancer::decode_score(std::size_t body_bytes) {
  return static_cast<double>(body_bytes);
}

request_lease balancer::begin_request(std::size_t body_bytes) {
  {
    std::lock_guard lock(mutex_);
    ++request_num_;
  }
  return request_lease(this, prefill_score(body_bytes), decode_score(body_bytes));
}

std::size_t balancer::request_num() const {
  std::lock_guard lock(mutex_);
  return request_num_;
}

std::size_t balancer::active_count(role kind) const {
  std::lock_guard lock(mutex_);
  return static_cast<std::size_t>(
      std::count_if(instances_.begin(), instances_.end(),
                    [kind](const instance& i) { return i.kind == kind && !i.isolated; }));
}

std::vector<instance_snapshot> balancer::instances() const {
  std::lock_guard lock(mutex_);
  std::vector<instance_snapshot> out;
  out.reserve(instances_.size());
  for (const auto& i : instances_) {
    out.push_back(
        {i.id, i.kind, i.address, i.active_tokens, i.active_kv_cache, i.inflight, i.isolated});
  }
  return out;
}

std::optional<std::pair<std::uint64_t, backend_address>> balancer::choose(
    role kind, double score, const std::vector<std::uint64_t>& avoid) {
  std::lock_guard lock(mutex_);
  instance* best = nullptr;
  for (bool use_avoided : {false, true}) {
    double best_load = 0;
    for (auto& i : instances_) {
      if (i.kind != kind || i.isolated) continue;
      if (!use_avoided && std::find(avoid.begin(), avoid.end(), i.id) != avoid.end()) continue;
      const double load =
          kind == role::prefill ? i.active_tokens + 0.3 * i.active_kv_cache : i.active_tokens;
      // Strictly lower only, so equal loads go to the instance added first.
      if (best == nullptr || load < best_load) {
        best = &i;
        best_load = load;
      }
    }
    if (best != nullptr || avoid.empty()) break;
  }
  if (best == nullptr) return std::nullopt;
  if (kind == role::prefill) {
    best->active_kv_cache += score;
  } else {
    best->active_tokens += score;
  }
  ++best->inflight;
  return std::pair{best->id, best->address};
}

void balancer::release(std::uint64_t id, double tokens, double kv_cache) {
  std::lock_guard lock(mutex_);
  auto it = std::find_if(instances_.begin(), instances_.end(),
                         [id](const instance& i) { return i.id == id; });
  // Removed since it was chosen: its load went with it.
  if (it == instances_.end()) return;
  it->active_tokens -= tokens;
  it->active_kv_cache -= kv_cache;
  if (it->inflight > 0) --it->inflight;
  if (it->inflight == 0) {
    // Adding and subtracting fractional prefill scores in a different order leaves float residue;
    // an idle instance must read exactly 0 or it loses every later tie.
    it->active_tokens = 0;
    it->active_kv_cache = 0;
  } else {
    it->active_tokens = std::max(0.0, it->active_tokens);
    it->active_kv_cache = std::max(0.0, it->active_kv_cache);
  }
}

void balancer::end_request() {
  std::lock_guard lock(mutex_);
  if (request_num_ > 0) --request_num_;
  if (request_num_ == 0) std::erase_if(instances_, [](const instance& i) { return i.isolated; });
}

std::vector<backend_address> balancer::add_pending(role kind,
                                                   const std::vector<backend_address>& addrs) {
  const auto now = now_();
  std::lock_guard lock(mutex_);
  std::vector<backend_address> queued;
  for (const auto& a : addrs) {
    // An isolated instance is on its way out, so adding its address back is a fresh instance.
    const bool active = std::any_of(instances_.begin(), instances_.end(), [&](const instance& i) {
      return i.kind == kind && !i.isolated && i.address.same_as(a);
    });
    const bool waiting = std::any_of(
        pending_.begin(), pending_.end(),
        [&](const pending_instance& p) { return p.kind == kind && p.address.same_as(a); });
    if (active || waiting) continue;
    pending_.push_back({next_id_++, kind, a, 0, now, false});
    queued.push_back(a);
  }
  return queued;
}

std::vector<backend_address> balancer::pending(role kind) const {
  std::lock_guard lock(mutex_);
  std::vector<backend_address> out;
  for (const auto& p : pending_) {
    if (p.kind == kind) out.push_back(p.address);
  }
  return out;
}

std::vector<probe_task> balancer::due_probes() {
  const auto now = now_();
  std::lock_guard lock(mutex_);
  std::vector<probe_task> out;
  for (auto& p : pending_) {
    if (p.probing || p.due > now) continue;
    p.probing = true;
    out.push_back({p.id, p.kind, p.address});
  }
  return out;
}

void balancer::probe_result(std::uint64_t pending_id, bool ok) {
  const auto now = now_();
  std::lock_guard lock(mutex_);
  auto it = std::find_if(pending_.begin(), pending_.end(),
                         [pending_id](const pending_instance& p) { return p.id == pending_id; });
  if (it == pending_.end()) return;
  if (ok) {
    // Appended last, so it loses ties to every instance that was already serving.
    instances_.push_back({it->id, it->kind, std::move(it->address)});
    pending_.erase(it);
    return;
  }
  if (++it->failures >= opts_.max_waiting_retries) {
    pending_.erase(it);
    return;
  }
  it->due = now + opts_.waiting_retry_interval;
  it->probing = false;
}

std::optional<std::chrono::steady_clock::time_point> balancer::next_probe_time() const {
  std::lock_guard lock(mutex_);
  std::optional<std::chrono::steady_clock::time_point> next;
  for (const auto& p : pending_) {
    if (p.probing) continue;
    if (!next || p.due < *next) next = p.due;
  }
  return next;
}

balancer::remove_result balancer::remove(role kind, const std::vector<backend_address>& addrs) {
  std::lock_guard lock(mutex_);
  remove_result result;
  for (auto& i : instances_) {
    if (i.kind != kind || i.isolated) continue;
    const bool match = std::any_of(addrs.begin(), addrs.end(),
                                   [&](const backend_address& a) { return i.address.same_as(a); });
    if (!match) continue;
    i.isolated = true;
    result.removed.push_back(i.address);
  }
  // Erasing an instance a lease still holds would be safe (its release finds nothing), but the
  // reference answers "isolated" while requests are in flight, and keeping the instance keeps the
  // load those requests still carry visible in /metrics until they drain.
  result.isolated = request_num_ > 0 && !result.removed.empty();
  if (request_num_ == 0) std::erase_if(instances_, [](const instance& i) { return i.isolated; });
  return result;
}

}  // namespace glm::balancer
