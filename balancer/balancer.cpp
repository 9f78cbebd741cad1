#include "balancer/balancer.hpp"

#include <algorithm>
#include <cmath>
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
  i.engine = engine_load(opts_.engine);
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
    s.engine = i.engine.last_sample();
    if (auto age = i.engine.sample_age(now)) {
      s.engine_age_seconds = std::chrono::duration<double>(*age).count();
    }
    s.engine_fresh = i.engine.fresh_sample(now).has_value();
    s.engine_up = i.engine.up();
    s.engine_saturated = i.engine.saturated(now);
    s.engine_failures_in_row = i.engine.failures_in_row();
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

void balancer::collect_candidates(role kind, double score, time_point now,
                                  const std::vector<std::uint64_t>& avoid,
                                  std::vector<instance*>& pool,
                                  std::vector<route_candidate>& candidates) {
  // An engine's request this proxy did not send is weighed like the one being placed, in the
  // unit of the role's score: a prefiller's load counts its kv-cache charge at 0.3.
  const double unseen_weight = kind == role::prefill ? 0.3 * score : score;
  for (bool use_avoided : {false, true}) {
    auto eligible = [&](const instance& i) {
      // An ejected instance is not even a last resort: it failed eject_after requests in a row.
      if (i.kind != kind || i.state != lifecycle::active) return false;
      return use_avoided || std::find(avoid.begin(), avoid.end(), i.id) == avoid.end();
    };
    saturation_veto veto;
    for (const auto& i : instances_) {
      if (eligible(i)) veto.count(i.engine.saturated(now));
    }
    for (auto& i : instances_) {
      if (!eligible(i) || veto.excludes(i.engine.saturated(now))) continue;
      pool.push_back(&i);
      const std::uint64_t unseen = i.engine.external_load(i.inflight, now);
      double load =
          kind == role::prefill ? i.active_tokens + 0.3 * i.active_kv_cache : i.active_tokens;
      if (unseen > 0) load += static_cast<double>(unseen) * unseen_weight;
      candidates.push_back({i.address_hash, load, i.inflight + unseen, i.last_pick, i.index.get()});
    }
    if (!pool.empty() || avoid.empty()) break;
  }
}

std::optional<std::pair<std::uint64_t, route_choice>> balancer::choose(
    role kind, double score, const std::vector<std::uint64_t>& avoid, const route_request& req,
    std::optional<std::uint64_t> back_to, request_lease::prefix_ticket* ticket) {
  const auto now = now_();
  std::lock_guard lock(mutex_);
  const route_policy policy = policy_of(kind);
  std::vector<instance*> pool;
  std::vector<route_candidate> candidates;
  collect_candidates(kind, score, now, avoid, pool, candidates);
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

void balancer::usage(std::uint64_t id, const request_lease::prefix_ticket* ticket,
                     std::int64_t prompt_tokens, std::int64_t cached_tokens) {
  if (prompt_tokens <= 0 || cached_tokens < 0) return;  // not a usage to learn from
  std::lock_guard lock(mutex_);
  if (ticket != nullptr && ticket->prompt_bytes > 0) {
    // A slow average: one odd answer (a template that adds many tokens) moves it a little.
    const double ratio =
        static_cast<double>(ticket->prompt_bytes) / static_cast<double>(prompt_tokens);
    bytes_per_token_ = 0.9 * bytes_per_token_ + 0.1 * ratio;
  }
  instance* i = find(id);
  if (i == nullptr) return;
  i->prompt_tokens += static_cast<std::uint64_t>(prompt_tokens);
  i->cached_tokens += static_cast<std::uint64_t>(std::min(cached_tokens, prompt_tokens));
  // An instance out of rotation had its entries dropped; an answer still in flight does not
  // bring them back.
  if (ticket == nullptr || !i->index || i->state != lifecycle::active) return;
  if (i->index->settle(ticket->blocks, ticket->confirmed, ticket->sequences,
                       static_cast<double>(cached_tokens) * bytes_per_token_)) {
    ++i->mispredictions;
  }
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

std::vector<scrape_target> balancer::scrape_targets() const {
  std::lock_guard lock(mutex_);
  std::vector<scrape_target> out;
  for (const auto& i : instances_) {
    if (i.state != lifecycle::isolated) out.push_back({i.id, i.kind, i.address});
  }
  return out;
}

void balancer::engine_report(std::uint64_t id, const engine_sample& sample) {
  std::lock_guard lock(mutex_);
  instance* i = find(id);
  if (i == nullptr) return;
  i->engine.on_sample(sample);
  // The engine holds cache_tokens of prompts at most; what the index predicts beyond that it
  // has evicted. Renewed on every report, as the bytes-per-token ratio is learned.
  if (i->index && sample.cache_tokens != 0) {
    i->index->set_max_bytes(static_cast<std::uint64_t>(
        std::ceil(static_cast<double>(sample.cache_tokens) * bytes_per_token_)));
  }
}

void balancer::engine_scrape_failed(std::uint64_t id) {
  std::lock_guard lock(mutex_);
  if (instance* i = find(id)) i->engine.on_scrape_failure();
}

void balancer::end_request() {
  std::lock_guard lock(mutex_);
  if (request_num_ > 0) --request_num_;
  if (request_num_ == 0) {
    std::erase_if(instances_, [](const instance& i) { return i.state == lifecycle::isolated; });
  }
}

}  // namespace glm::balancer
