#include "bench/mock_vllm/mock_state.hpp"

#include <vector>

#include "bench/mock_vllm/json_text.hpp"

namespace glm::mock {

std::shared_ptr<const recorded_request> mock_state::record(recorded_request request) {
  auto shared = std::make_shared<const recorded_request>(std::move(request));
  ++requests_;
  std::lock_guard lock(mutex_);
  records_.push_back(shared);
  record_bytes_ += shared->body.size();
  while (records_.size() > max_records ||
         (record_bytes_ > max_record_bytes && records_.size() > 1)) {
    record_bytes_ -= records_.front()->body.size();
    records_.pop_front();
  }
  return shared;
}

void mock_state::count_role(request_role role) {
  switch (role) {
    case request_role::prefill:
      ++prefill_;
      break;
    case request_role::decode:
      ++decode_;
      break;
    case request_role::plain:
      ++plain_;
      break;
  }
}

std::string mock_state::requests_json() const {
  // Serialize outside the lock: 10,000 records must not stall every session.
  std::vector<std::shared_ptr<const recorded_request>> snapshot;
  {
    std::lock_guard lock(mutex_);
    snapshot.assign(records_.begin(), records_.end());
  }
  std::string out = "[";
  for (const auto& r : snapshot) {
    if (out.size() > 1) out += ',';
    out += "{\"method\":";
    json_text::append_quoted(out, r->method);
    out += ",\"target\":";
    json_text::append_quoted(out, r->target);
    out += ",\"headers\":{";
    bool first = true;
    for (const auto& [name, value] : r->headers) {
      if (!first) out += ',';
      first = false;
      json_text::append_quoted(out, name);
      out += ':';
      json_text::append_quoted(out, value);
    }
    out += "},\"body\":";
    json_text::append_quoted(out, r->body);
    out += '}';
  }
  out += ']';
  return out;
}

std::string mock_state::stats_json() const {
  return "{\"requests\":" + std::to_string(requests_.load()) +
         ",\"prefill\":" + std::to_string(prefill_.load()) +
         ",\"decode\":" + std::to_string(decode_.load()) +
         ",\"plain\":" + std::to_string(plain_.load()) +
         ",\"active_streams\":" + std::to_string(active_streams_.load()) +
         ",\"client_disconnects\":" + std::to_string(client_disconnects_.load()) + "}";
}

void mock_state::reset() {
  std::lock_guard lock(mutex_);
  records_.clear();
  record_bytes_ = 0;
  requests_ = 0;
  prefill_ = 0;
  decode_ = 0;
  plain_ = 0;
  client_disconnects_ = 0;
}

}  // namespace glm::mock
