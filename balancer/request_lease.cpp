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
      avoid_(std::exchange(other.avoid_, {})) {}

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
  return *this;
}

request_lease::~request_lease() {
  reset();
}

std::optional<backend_address> request_lease::choose_prefiller() {
  if (owner_ == nullptr) return std::nullopt;
  release_prefill();
  auto chosen = owner_->choose(role::prefill, prefill_score_, avoid_);
  if (!chosen) return std::nullopt;
  prefiller_ = chosen->first;
  return std::move(chosen->second);
}

std::optional<backend_address> request_lease::choose_decoder() {
  if (owner_ == nullptr) return std::nullopt;
  release_decoder();
  auto chosen = owner_->choose(role::decode, decode_score_, avoid_);
  if (!chosen) return std::nullopt;
  decoder_ = chosen->first;
  return std::move(chosen->second);
}

void request_lease::prefill_failed(bool instance_fault) {
  if (owner_ == nullptr || !prefiller_) return;
  avoid_.push_back(*prefiller_);
  if (instance_fault) owner_->failed(*prefiller_);
}

void request_lease::decode_failed(bool instance_fault) {
  if (owner_ == nullptr || !decoder_) return;
  avoid_.push_back(*decoder_);
  if (instance_fault) owner_->failed(*decoder_);
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
