#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "balancer/backend_address.hpp"

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
};

}  // namespace glm::balancer
