#include "balancer/balancer.hpp"

#include <algorithm>
#include <utility>

namespace glm::balancer {
namespace {

// Between two take_ejections() calls; a flapping fleet must not grow memory.
constexpr std::size_t max_kept_ejections = 256;

std::chrono::milliseconds ejection_time(int level, std::chrono::milliseconds base,
                                        std::chrono::milliseconds cap) {
  cap = std::max(cap, base);
  auto d = base;
  // Doubling stops at the cap, so no level, however high, overflows.
  for (int k = 1; k < level && d < cap; ++k) d *= 2;
  return std::min(d, cap);
}

}  // namespace

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
  const auto now = now_();
  for (const auto& i : instances_) {
    instance_snapshot s;
    s.id = i.id;
    s.kind = i.kind;
    s.address = i.address;
    s.active_tokens = i.active_tokens;
    s.active_kv_cache = i.active_kv_cache;
    s.inflight = i.inflight;
    s.isolated = i.isolated;
    s.ejected = i.ejected;
    s.probing = i.ejected && i.ejected_until <= now;
    s.consecutive_failures = i.consecutive_failures;
    s.ejections_total = i.ejections_total;
    if (i.ejected && !s.probing) {
      s.eject_seconds_left = std::chrono::duration<double>(i.ejected_until - now).count();
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::chrono::seconds balancer::retry_after(role kind) const {
  const auto now = now_();
  std::lock_guard lock(mutex_);
  std::optional<std::chrono::steady_clock::time_point> earliest;
  for (const auto& i : instances_) {
    if (i.kind != kind || i.isolated || !i.ejected) continue;
    if (!earliest || i.ejected_until < *earliest) earliest = i.ejected_until;
  }
  const std::chrono::seconds at_least{1};
  if (!earliest || *earliest <= now) return at_least;
  return std::max(at_least, std::chrono::ceil<std::chrono::seconds>(*earliest - now));
}

std::vector<ejection_event> balancer::take_ejections() {
  std::lock_guard lock(mutex_);
  return std::exchange(ejections_, {});
}

std::optional<std::pair<std::uint64_t, backend_address>> balancer::choose(
    role kind, double score, const std::vector<std::uint64_t>& avoid) {
  std::lock_guard lock(mutex_);
  instance* best = nullptr;
  for (bool use_avoided : {false, true}) {
    double best_load = 0;
    for (auto& i : instances_) {
      // An ejected instance is not even a last resort: it failed eject_after requests in a row.
      if (i.kind != kind || i.isolated || i.ejected) continue;
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

void balancer::succeeded(std::uint64_t id) {
  std::lock_guard lock(mutex_);
  auto it = std::find_if(instances_.begin(), instances_.end(),
                         [id](const instance& i) { return i.id == id; });
  // Only a probe brings an ejected instance back: one lucky request in flight proves little.
  if (it == instances_.end() || it->ejected) return;
  it->consecutive_failures = 0;
}

void balancer::failed(std::uint64_t id) {
  const auto now = now_();
  std::lock_guard lock(mutex_);
  auto it = std::find_if(instances_.begin(), instances_.end(),
                         [id](const instance& i) { return i.id == id; });
  // Requests that were in flight when it was ejected fail too; they must not lengthen the ejection.
  if (it == instances_.end() || it->ejected || it->isolated) return;
  ++it->consecutive_failures;
  if (opts_.eject_after > 0 && it->consecutive_failures >= opts_.eject_after) {
    eject(*it, now, false);
  }
}

void balancer::eject(instance& i, std::chrono::steady_clock::time_point now, bool after_probe) {
  // A failed probe continues the run of ejections; an instance that then stayed in rotation for
  // as long as its last ejection has proven itself, and starts over at the base time.
  if (!after_probe && i.ejection_level > 0 && now - i.back_since >= i.last_ejection) {
    i.ejection_level = 0;
  }
  ++i.ejection_level;
  i.last_ejection = ejection_time(i.ejection_level, opts_.eject_base, opts_.eject_max);
  i.ejected = true;
  i.probing = false;
  i.ejected_until = now + i.last_ejection;
  ++i.ejections_total;
  if (ejections_.size() < max_kept_ejections) {
    ejections_.push_back({i.kind, i.address, i.last_ejection, after_probe});
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
    out.push_back({p.id, p.kind, p.address, false});
  }
  for (auto& i : instances_) {
    // An instance on its way out needs no probe.
    if (!i.ejected || i.probing || i.isolated || i.ejected_until > now) continue;
    i.probing = true;
    out.push_back({i.id, i.kind, i.address, true});
  }
  return out;
}

void balancer::probe_result(std::uint64_t pending_id, bool ok) {
  const auto now = now_();
  std::lock_guard lock(mutex_);
  auto it = std::find_if(pending_.begin(), pending_.end(),
                         [pending_id](const pending_instance& p) { return p.id == pending_id; });
  if (it == pending_.end()) {
    // Ids are shared by pending and active instances and never reused, so this is an ejected
    // instance's probe, or one for an instance that is gone.
    auto e = std::find_if(instances_.begin(), instances_.end(),
                          [pending_id](const instance& i) { return i.id == pending_id; });
    if (e == instances_.end() || !e->ejected || !e->probing) return;
    e->probing = false;
    if (e->isolated) return;  // removed meanwhile: it goes when its requests end
    if (ok) {
      e->ejected = false;
      e->consecutive_failures = 0;
      e->back_since = now;
    } else {
      ++e->consecutive_failures;
      eject(*e, now, true);
    }
    return;
  }
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
  for (const auto& i : instances_) {
    if (!i.ejected || i.probing || i.isolated) continue;
    if (!next || i.ejected_until < *next) next = i.ejected_until;
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
