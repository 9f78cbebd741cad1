#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "balancer/backend_address.hpp"
#include "balancer/route_policy.hpp"

namespace glm::balancer {

class balancer;

// The load one client request puts on the balancer. Move-only; whatever it still holds is released
// when it is reset or destroyed, so every way a request can end (answer, error, client gone,
// timeout, exception) gives all its load back.
//
// Not thread-safe itself: one request (one coroutine) owns it. The balancer must outlive it.
class request_lease {
 public:
  request_lease() = default;
  request_lease(request_lease&& other) noexcept;
  request_lease& operator=(request_lease&& other) noexcept;
  request_lease(const request_lease&) = delete;
  request_lease& operator=(const request_lease&) = delete;
  ~request_lease();

  // Choose the least-loaded prefiller (decoder) and charge it this request's score. A prefiller or
  // decoder this lease already holds is released first, so a retry or a recompute never double
  // counts. nullopt when no instance of that role can be chosen.
  std::optional<backend_address> choose_prefiller();
  std::optional<backend_address> choose_decoder();
  // The same, by the role's route_policy on what `req` says about the request (the prefix digest
  // of protocol/prefix_hasher, computed before this call so that hashing stays outside the
  // balancer's lock). The choice says why it was made and the predicted prefix-cache match.
  // `req`'s views need only outlive the call; the blocks a cache_aware choice needs later are
  // copied into the lease.
  std::optional<route_choice> choose_prefiller(const route_request& req);
  std::optional<route_choice> choose_decoder(const route_request& req);

  // The prefiller's answer to this request reported usage.prompt_tokens and
  // usage.prompt_tokens_details.cached_tokens: confirms or corrects what cache_aware predicted on
  // it, and teaches the balancer how many prompt bytes make a token; in every policy it adds to
  // the prefiller's prompt_tokens and cached_tokens (instance_snapshot). Call it once per answered
  // prefill, before release_prefill() or after (the lease remembers the prefiller); an answer
  // without usage calls nothing, which leaves the prediction unconfirmed.
  void prefill_usage(std::int64_t prompt_tokens, std::int64_t cached_tokens);

  // The prefiller (decoder) this lease holds failed this request: later choices avoid it while
  // another instance of its role can be chosen, so a retry goes elsewhere. instance_fault counts
  // the failure toward ejecting the instance (balancer::options::eject_after); pass false for an
  // answer that is the request's own fault (HTTP 4xx), which any instance would give.
  void prefill_failed(bool instance_fault = true);
  void decode_failed(bool instance_fault = true);
  // The prefiller (decoder) this lease holds served this request: its consecutive failures start
  // over. Nothing is released; the lease still holds it.
  void prefill_succeeded();
  void decode_succeeded();

  // Give back the prefill score (on the first decode byte) or the decode score. Idempotent.
  void release_prefill();
  void release_decoder();

  // Release everything and stop counting the request in request_num. Idempotent.
  void reset();

  bool active() const { return owner_ != nullptr; }

  // What a cache_aware prefill choice predicted, kept until its answer (balancer-internal).
  struct prefix_ticket {
    std::uint64_t instance = 0;  // 0: no cache_aware prefill choice is outstanding
    std::vector<std::uint64_t> blocks;
    std::size_t prompt_bytes = 0;
    std::size_t matched = 0;               // blocks predicted present
    std::size_t confirmed = 0;             // of them, confirmed by an earlier answer
    std::vector<std::uint64_t> sequences;  // of the confirmed ones, before this choice touched them
  };
  double prefill_score() const { return prefill_score_; }
  double decode_score() const { return decode_score_; }

 private:
  friend class balancer;
  request_lease(balancer* owner, double prefill_score, double decode_score)
      : owner_(owner), prefill_score_(prefill_score), decode_score_(decode_score) {}

  balancer* owner_ = nullptr;
  double prefill_score_ = 0;
  double decode_score_ = 0;
  std::optional<std::uint64_t> prefiller_;  // instance ids currently charged
  std::optional<std::uint64_t> decoder_;
  std::vector<std::uint64_t> avoid_;  // instances that failed this request (ids are never reused)
  std::optional<std::uint64_t> last_prefiller_;  // kept after release, for a recompute
  bool usage_pending_ = false;  // a prefiller was chosen and its answer's usage is not in yet
  prefix_ticket ticket_;
};

}  // namespace glm::balancer
