#include "balancer/request_lease.hpp"

#include <utility>

#include "balancer/balancer.hpp"

namespace glm::balancer {

request_lease::request_lease(request_lease&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)),
      prefill_score_(other.prefill_score_),
      decode_score_(other.decode_score_),
      prefiller_(std::exchange(other.prefiller_, std::nullopt)),
      decoder_(std::exchange(other.decoder_, std::nullopt)),
      avoid_(std::exchange(other.avoid_, {})),
      last_prefiller_(std::exchange(other.last_prefiller_, std::nullopt)),
      usage_pending_(std::exchange(other.usage_pending_, false)),
      ticket_(std::exchange(other.ticket_, {})) {}

request_lease& request_lease::operator=(request_lease&& other) noexcept {
  if (this == &other) return *this;
  // The request this lease counted ends here; its load must not outlive it.
  reset();
  owner_ = std::exchange(other.owner_, nullptr);
  prefill_score_ = other.prefill_score_;
  decode_score_ = other.decode_score_;
  prefiller_ = std::exchange(other.prefiller_, std::nullopt);
  decoder_ = std::exchange(other.decoder_, std::nullopt);
  avoid_ = std::exchange(other.avoid_, {});
  last_prefiller_ = std::exchange(other.last_prefiller_, std::nullopt);
  usage_pending_ = std::exchange(other.usage_pending_, false);
  ticket_ = std::exchange(other.ticket_, {});
  return *this;
}

request_lease::~request_lease() {
  reset();
}

std::optional<backend_address> request_lease::choose_prefiller() {
  auto c = choose_prefiller(route_request{});
  if (!c) return std::nullopt;
  return std::move(c->address);
}

std::optional<backend_address> request_lease::choose_decoder() {
  auto c = choose_decoder(route_request{});
  if (!c) return std::nullopt;
  return std::move(c->address);
}

std::optional<route_choice> request_lease::choose_prefiller(const route_request& req) {
  if (owner_ == nullptr) return std::nullopt;
  release_prefill();
  // A recompute goes back to the prefiller this request last used (released on its first byte).
  std::optional<std::uint64_t> back_to;
  if (req.recompute) back_to = last_prefiller_;
  auto chosen = owner_->choose(role::prefill, prefill_score_, avoid_, req, back_to, &ticket_);
  if (!chosen) return std::nullopt;
  prefiller_ = chosen->first;
  last_prefiller_ = chosen->first;
  usage_pending_ = true;
  return std::move(chosen->second);
}

std::optional<route_choice> request_lease::choose_decoder(const route_request& req) {
  if (owner_ == nullptr) return std::nullopt;
  release_decoder();
  auto chosen = owner_->choose(role::decode, decode_score_, avoid_, req, std::nullopt, nullptr);
  if (!chosen) return std::nullopt;
  decoder_ = chosen->first;
  return std::move(chosen->second);
}

void request_lease::prefill_usage(std::int64_t prompt_tokens, std::int64_t cached_tokens) {
  if (owner_ == nullptr || !last_prefiller_ || !usage_pending_) return;
  usage_pending_ = false;  // one answer per choice
  const bool predicted = ticket_.instance == *last_prefiller_;
  owner_->usage(*last_prefiller_, predicted ? &ticket_ : nullptr, prompt_tokens, cached_tokens);
  ticket_ = {};  // one answer per choice
}

void request_lease::prefill_failed(bool instance_fault) {
  if (owner_ == nullptr || !prefiller_) return;
  avoid_.push_back(*prefiller_);
  // What the failed prefill was to compute is not in that cache, fault or not.
  owner_->failed(*prefiller_, instance_fault, ticket_.instance == *prefiller_ ? &ticket_ : nullptr);
  if (ticket_.instance == *prefiller_) ticket_ = {};
}

void request_lease::decode_failed(bool instance_fault) {
  if (owner_ == nullptr || !decoder_) return;
  avoid_.push_back(*decoder_);
  owner_->failed(*decoder_, instance_fault, nullptr);
}

void request_lease::prefill_succeeded() {
  if (owner_ != nullptr && prefiller_) owner_->succeeded(*prefiller_);
}

void request_lease::decode_succeeded() {
  if (owner_ != nullptr && decoder_) owner_->succeeded(*decoder_);
}

void request_lease::release_prefill() {
  if (owner_ == nullptr || !prefiller_) return;
  owner_->release(*prefiller_, 0, prefill_score_);
  prefiller_.reset();
}

void request_lease::release_decoder() {
  if (owner_ == nullptr || !decoder_) return;
  owner_->release(*decoder_, decode_score_, 0);
  decoder_.reset();
}

void request_lease::reset() {
  if (owner_ == nullptr) return;
  release_prefill();
  release_decoder();
  owner_->end_request();
  owner_ = nullptr;
}

}  // namespace glm::balancer
