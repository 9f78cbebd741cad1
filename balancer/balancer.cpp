#include "balancer/balancer.hpp"

#include <algorithm>
#include <utility>

#include "balancer/route_selector.hpp"
#include "protocol/prefix_blocks.hpp"

namespace glm::balancer {
namespace {

// Between two take_ejections() calls; a flapping fleet must not grow memory.
constexpr std::size_t max_kept_ejections = 256;

std::size_t role_index(role kind) {
  return kind == role::prefill ? 0 : 1;
}

}  // namespace

balancer::balancer(const std::vector<backend_address>& prefillers,
                   const std::vector<backend_address>& decoders, options opts, clock now)
    : opts_(opts), now_(std::move(now)) {
  instances_.reserve(prefillers.size() + decoders.size());
  for (const auto& a : prefillers) {
    instances_.push_back(make_instance(role::prefill, a, lifecycle::active));
  }
  for (const auto& a : decoders) {
    instances_.push_back(make_instance(role::decode, a, lifecycle::active));
  }
}

balancer::instance balancer::make_instance(role kind, const backend_address& a, lifecycle state) {
  instance i;
  i.id = next_id_++;
  i.kind = kind;
  i.address = a;
  i.address_hash = rendezvous_hash::of_address(a.to_string());
  i.state = state;
  if (policy_of(kind) == route_policy::cache_aware) {
    i.index = std::make_unique<prefix_index>(opts_.routing.cache_max_entries);
  }
  return i;
}

balancer::instance* balancer::find(std::uint64_t id) {
  auto it = std::find_if(instances_.begin(), instances_.end(),
                         [id](const instance& i) { return i.id == id; });
  return it == instances_.end() ? nullptr : &*it;
}

route_policy balancer::policy_of(role kind) const {
  return kind == role::prefill ? opts_.routing.prefill_policy : opts_.routing.decode_policy;
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
  return static_cast<std::size_t>(std::count_if(
      instances_.begin(), instances_.end(),
      [kind](const instance& i) { return i.kind == kind && is_serving_member(i.state); }));
}

std::vector<instance_snapshot> balancer::instances() const {
  std::lock_guard lock(mutex_);
  std::vector<instance_snapshot> out;
  out.reserve(instances_.size());
  const auto now = now_();
  for (const auto& i : instances_) {
    if (!is_member(i.state)) continue;
    instance_snapshot s;
    s.id = i.id;
    s.kind = i.kind;
    s.address = i.address;
    s.active_tokens = i.active_tokens;
    s.active_kv_cache = i.active_kv_cache;
    s.inflight = i.inflight;
    s.state = i.state;
    s.isolated = i.state == lifecycle::isolated;
    s.ejected = is_out_of_rotation(i.state);
    s.probing =
        i.state == lifecycle::probing || (i.state == lifecycle::ejected && i.next_probe <= now);
    s.consecutive_failures = i.consecutive_failures;
    s.ejections_total = i.backoff.total();
    if (s.ejected && !s.probing) {
      s.eject_seconds_left = std::chrono::duration<double>(i.next_probe - now).count();
    }
    s.picks = i.picks;
    s.prefix_entries = i.index ? i.index->size() : 0;
    s.mispredictions = i.mispredictions;
    s.prompt_tokens = i.prompt_tokens;
    s.cached_tokens = i.cached_tokens;
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<route_decision_count> balancer::route_decisions() const {
  std::lock_guard lock(mutex_);
  std::vector<route_decision_count> out;
  for (role kind : {role::prefill, role::decode}) {
    for (std::size_t r = 0; r < route_reason_count; ++r) {
      out.push_back({kind, policy_of(kind), static_cast<route_reason>(r),
                     decisions_[role_index(kind) * route_reason_count + r]});
    }
  }
  return out;
}

double balancer::bytes_per_token() const {
  std::lock_guard lock(mutex_);
  return bytes_per_token_;
}

void balancer::reset_prefix_cache(role kind, const std::optional<backend_address>& which) {
  std::lock_guard lock(mutex_);
  for (auto& i : instances_) {
    if (i.kind != kind || !i.index) continue;
    if (which && !i.address.same_as(*which)) continue;
    i.index->clear();
  }
}

std::chrono::seconds balancer::retry_after(role kind) const {
  const auto now = now_();
  std::lock_guard lock(mutex_);
  std::optional<time_point> earliest;
  for (const auto& i : instances_) {
    if (i.kind != kind || !is_out_of_rotation(i.state)) continue;
    if (!earliest || i.next_probe < *earliest) earliest = i.next_probe;
  }
  const std::chrono::seconds at_least{1};
  if (!earliest || *earliest <= now) return at_least;
  return std::max(at_least, std::chrono::ceil<std::chrono::seconds>(*earliest - now));
}

std::vector<ejection_event> balancer::take_ejections() {
  std::lock_guard lock(mutex_);
  return std::exchange(ejections_, {});
}

void balancer::count(role kind, route_reason reason) {
  ++decisions_[role_index(kind) * route_reason_count + static_cast<std::size_t>(reason)];
}

std::optional<std::pair<std::uint64_t, route_choice>> balancer::choose(
    role kind, double score, const std::vector<std::uint64_t>& avoid, const route_request& req,
    std::optional<std::uint64_t> back_to, request_lease::prefix_ticket* ticket) {
  std::lock_guard lock(mutex_);
  const route_policy policy = policy_of(kind);
  std::vector<instance*> pool;
  std::vector<route_candidate> candidates;
  for (bool use_avoided : {false, true}) {
    for (auto& i : instances_) {
      // An ejected instance is not even a last resort: it failed eject_after requests in a row.
      if (i.kind != kind || i.state != lifecycle::active) continue;
      if (!use_avoided && std::find(avoid.begin(), avoid.end(), i.id) != avoid.end()) continue;
      pool.push_back(&i);
      const double load =
          kind == role::prefill ? i.active_tokens + 0.3 * i.active_kv_cache : i.active_tokens;
      candidates.push_back({i.address_hash, load, i.inflight, i.last_pick, i.index.get()});
    }
    if (!pool.empty() || avoid.empty()) break;
  }
  if (pool.empty()) return std::nullopt;

  auto slot_of = [&](std::optional<std::uint64_t> id) -> std::optional<std::size_t> {
    if (!id) return std::nullopt;
    for (std::size_t k = 0; k < pool.size(); ++k) {
      if (pool[k]->id == *id) return k;
    }
    return std::nullopt;
  };
  auto& pins = sessions_[role_index(kind)];
  std::optional<std::size_t> session;
  if (policy == route_policy::cache_aware && !req.session_key.empty()) {
    session = slot_of(pins.find(req.session_key));
  }
  auto d =
      route_selector::decide(policy, opts_.routing, candidates, req, slot_of(back_to), session);
  instance& best = *pool[d.pick];
  if (d.reason == route_reason::hash) {
    // The key's first instance may be one that cannot be chosen now (ejected, or failed this
    // request): then its keys spilled, which the selector, seeing only candidates, cannot tell.
    const auto w = rendezvous_hash::weight(req.routing_key, best.address_hash);
    for (const auto& i : instances_) {
      if (i.kind == kind && is_serving_member(i.state) && i.id != best.id &&
          rendezvous_hash::weight(req.routing_key, i.address_hash) > w) {
        d.reason = route_reason::hash_spill;
        break;
      }
    }
  }

  if (kind == role::prefill) {
    best.active_kv_cache += score;
  } else {
    best.active_tokens += score;
  }
  ++best.inflight;
  ++best.picks;
  best.last_pick = next_pick_++;
  count(kind, d.reason);

  route_choice choice;
  choice.address = best.address;
  choice.reason = d.reason;
  if (best.index && !req.blocks.empty()) {
    const auto predicted = d.match.blocks;
    choice.predicted_bytes = predicted == 0 ? 0 : protocol::prefix_blocks::end(predicted - 1);
    choice.predicted_tokens =
        static_cast<std::size_t>(static_cast<double>(choice.predicted_bytes) / bytes_per_token_);
    if (ticket != nullptr) {
      ticket->instance = best.id;
      ticket->blocks.assign(req.blocks.begin(), req.blocks.end());
      ticket->prompt_bytes = req.prompt_bytes;
      ticket->matched = d.match.blocks;
      ticket->confirmed = d.match.confirmed;
      best.index->sequences(req.blocks, d.match.confirmed, ticket->sequences);
    }
    // Predicted from now on: the next turn of this conversation, even one that arrives while
    // this prefill still runs, follows it here instead of scattering.
    best.index->record(req.blocks);
  } else if (ticket != nullptr) {
    *ticket = {};
  }
  if (policy == route_policy::cache_aware && !req.session_key.empty()) {
    pins.pin(req.session_key, best.id, opts_.routing.cache_max_entries);
  }
  return std::pair{best.id, std::move(choice)};
}

void balancer::usage(const request_lease::prefix_ticket& ticket, std::int64_t prompt_tokens,
                     std::int64_t cached_tokens) {
  if (prompt_tokens <= 0 || cached_tokens < 0) return;  // not a usage to learn from
  std::lock_guard lock(mutex_);
  if (ticket.prompt_bytes > 0) {
    // A slow average: one odd answer (a template that adds many tokens) moves it a little.
    const double ratio =
        static_cast<double>(ticket.prompt_bytes) / static_cast<double>(prompt_tokens);
    bytes_per_token_ = 0.9 * bytes_per_token_ + 0.1 * ratio;
  }
  instance* i = find(ticket.instance);
  if (i == nullptr) return;
  i->prompt_tokens += static_cast<std::uint64_t>(prompt_tokens);
  i->cached_tokens += static_cast<std::uint64_t>(cached_tokens);
  if (!i->index) return;

  // How many blocks the answer says were cached, generously: the bytes-per-token ratio is an
  // average and the chat template adds tokens the raw bytes do not show.
  const double cached_bytes = static_cast<double>(cached_tokens) * bytes_per_token_;
  const std::size_t slack = protocol::prefix_blocks::small_block;
  const std::size_t cached_blocks =
      protocol::prefix_blocks::count(static_cast<std::size_t>(cached_bytes * 1.25) + 2 * slack);
  if (ticket.confirmed > cached_blocks) {
    // A confirmed entry was contradicted: the cache evicted block j (or restarted). An LRU cache
    // evicts in order of last use, so everything last used before block j was is gone too; what
    // was used after it is not contradicted and stays.
    ++i->mispredictions;
    const std::size_t j = protocol::prefix_blocks::count(static_cast<std::size_t>(cached_bytes));
    if (j < ticket.sequences.size() && ticket.sequences[j] != 0) {
      i->index->withdraw_older_than(ticket.sequences[j] + 1);
    }
  }
  // The prefill computed the whole prompt: its blocks are in that cache now (those the
  // withdrawal removed included, so they are recorded again).
  i->index->record(ticket.blocks);
  i->index->confirm(ticket.blocks);
}

void balancer::release(std::uint64_t id, double tokens, double kv_cache) {
  std::lock_guard lock(mutex_);
  instance* i = find(id);
  // Removed since it was chosen: its load went with it.
  if (i == nullptr) return;
  i->active_tokens -= tokens;
  i->active_kv_cache -= kv_cache;
  if (i->inflight > 0) --i->inflight;
  if (i->inflight == 0) {
    // Adding and subtracting fractional prefill scores in a different order leaves float residue;
    // an idle instance must read exactly 0 or it loses every later tie.
    i->active_tokens = 0;
    i->active_kv_cache = 0;
  } else {
    i->active_tokens = std::max(0.0, i->active_tokens);
    i->active_kv_cache = std::max(0.0, i->active_kv_cache);
  }
}

void balancer::succeeded(std::uint64_t id) {
  std::lock_guard lock(mutex_);
  instance* i = find(id);
  // Only a probe brings an ejected instance back: one lucky request in flight proves little.
  if (i == nullptr || i->state != lifecycle::active) return;
  i->consecutive_failures = 0;
}

void balancer::failed(std::uint64_t id, bool instance_fault,
                      const request_lease::prefix_ticket* ticket) {
  const auto now = now_();
  std::lock_guard lock(mutex_);
  instance* i = find(id);
  if (i == nullptr) return;
  if (ticket != nullptr && i->index) {
    // The blocks this request added were never computed there.
    i->index->erase_unconfirmed(ticket->blocks, ticket->matched);
  }
  // Requests that were in flight when it was ejected fail too; they must not lengthen the ejection.
  if (!instance_fault || i->state != lifecycle::active) return;
  ++i->consecutive_failures;
  if (opts_.eject_after > 0 && i->consecutive_failures >= opts_.eject_after) eject(*i, now, false);
}

void balancer::eject(instance& i, time_point now, bool after_probe) {
  const auto next = transition::eject(i.state);
  if (!next) return;
  i.state = *next;
  const auto d = i.backoff.eject(now, after_probe, opts_.eject_base, opts_.eject_max);
  i.next_probe = now + d;
  // Whatever it had cached is not to be trusted when it comes back (it may have restarted).
  if (i.index) i.index->clear();
  if (ejections_.size() < max_kept_ejections) {
    ejections_.push_back({i.kind, i.address, d, after_probe});
  }
}

void balancer::end_request() {
  std::lock_guard lock(mutex_);
  if (request_num_ > 0) --request_num_;
  if (request_num_ == 0) {
    std::erase_if(instances_, [](const instance& i) { return i.state == lifecycle::isolated; });
  }
}

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
  for (auto& i : instances_) {
    if (i.kind != kind) continue;
    const bool match = std::any_of(addrs.begin(), addrs.end(),
                                   [&](const backend_address& a) { return i.address.same_as(a); });
    if (!match) continue;
    const auto next = transition::isolate(i.state);
    if (!next) continue;
    i.state = *next;
    if (i.index) i.index->clear();
    result.removed.push_back(i.address);
  }
  // Erasing an instance a lease still holds would be safe (its release finds nothing), but the
  // reference answers "isolated" while requests are in flight, and keeping the instance keeps the
  // load those requests still carry visible in /metrics until they drain.
  result.isolated = request_num_ > 0 && !result.removed.empty();
  if (request_num_ == 0) {
    std::erase_if(instances_, [](const instance& i) { return i.state == lifecycle::isolated; });
  }
  return result;
}

std::optional<std::uint64_t> balancer::session_pins::find(std::string_view key) {
  auto it = map_.find(key);
  if (it == map_.end()) return std::nullopt;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->second;
}

void balancer::session_pins::pin(std::string_view key, std::uint64_t id, std::size_t max_entries) {
  if (auto it = map_.find(key); it != map_.end()) {
    it->second->second = id;
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  lru_.emplace_front(std::string(key), id);
  map_.emplace(lru_.front().first, lru_.begin());
  while (map_.size() > std::max<std::size_t>(1, max_entries)) {
    map_.erase(lru_.back().first);
    lru_.pop_back();
  }
}

}  // namespace glm::balancer
