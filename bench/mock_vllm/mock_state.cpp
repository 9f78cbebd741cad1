#include "bench/mock_vllm/mock_state.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "bench/mock_vllm/json_text.hpp"

namespace glm::mock {

mock_state::mock_state(const mock_config& config)
    : config_(config),
      cache_(config.prefix_cache_blocks),
      gate_(config.max_concurrent_prefills),
      initial_fault_(
          vllm_metrics::parse_fault(config.metrics_fault).value_or(metrics_fault::none)) {
  metrics_fault_ = initial_fault_;
}

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

void mock_state::count_prefill(std::int64_t prompt_tokens, std::int64_t cached_tokens,
                               std::chrono::steady_clock::duration took) {
  ++prefills_done_;
  prompt_tokens_ += prompt_tokens;
  cached_tokens_ += cached_tokens;
  const double seconds = std::chrono::duration<double>(took).count();
  const auto& buckets = vllm_metrics::ttft_buckets;
  const auto bucket = static_cast<std::size_t>(
      std::lower_bound(buckets.begin(), buckets.end(), seconds) - buckets.begin());
  std::lock_guard lock(mutex_);
  ++ttft_counts_[bucket];
  ttft_sum_ += seconds;
}

void mock_state::count_generation(std::int64_t tokens) {
  ++generations_done_;
  generation_tokens_ += tokens;
}

mock_state::busy::busy(mock_state& state, std::int64_t blocks) : state_(state), blocks_(blocks) {
  ++state_.busy_requests_;
  state_.busy_blocks_ += blocks_;
}

mock_state::busy::~busy() {
  --state_.busy_requests_;
  state_.busy_blocks_ -= blocks_;
}

namespace {

// Unix time in seconds with microseconds, comparable with Python's time.time().
void append_time(std::string& out, std::chrono::system_clock::time_point t) {
  char text[40];
  const double seconds = std::chrono::duration<double>(t.time_since_epoch()).count();
  const int n = std::snprintf(text, sizeof text, "%.6f", seconds);
  out.append(text, static_cast<std::size_t>(n));
}

}  // namespace

void mock_state::record_metaserver_call(metaserver_call call) {
  std::lock_guard lock(mutex_);
  if (call.answer.status / 100 != 2) ++metaserver_failed_;
  metaserver_calls_.push_back(std::move(call));
  while (metaserver_calls_.size() > max_metaserver_calls) metaserver_calls_.pop_front();
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
    out += ",\"received_at\":";
    append_time(out, r->received_at);
    out += '}';
  }
  out += ']';
  return out;
}

std::string mock_state::stats_json() const {
  auto field = [](const char* name, std::int64_t v) {
    return ",\"" + std::string(name) + "\":" + std::to_string(v);
  };
  std::string out = "{\"requests\":" + std::to_string(requests_.load());
  out += field("prefill", prefill_.load());
  out += field("decode", decode_.load());
  out += field("plain", plain_.load());
  out += field("active_streams", active_streams_.load());
  out += field("client_disconnects", client_disconnects_.load());
  out += field("prefills_done", prefills_done_.load());
  out += field("prompt_tokens", prompt_tokens_.load());
  out += field("cached_tokens", cached_tokens_.load());
  out += field("generation_tokens", generation_tokens_.load());
  out += field("running", busy_requests_.load());
  out += field("waiting", gate_.waiting());
  out += field("prefix_cache_blocks", cache_.size());
  out += field("prefix_cache_capacity", cache_.capacity());
  out += field("prefix_cache_evictions", cache_.evictions());
  out += field("metrics_requests", metrics_requests_.load());
  std::lock_guard lock(mutex_);
  out += field("metaserver_calls", static_cast<std::int64_t>(metaserver_calls_.size()));
  out += field("metaserver_failed", metaserver_failed_);
  out += ",\"metaserver_callbacks\":[";
  bool first = true;
  for (const auto& call : metaserver_calls_) {
    if (!first) out += ',';
    first = false;
    out += "{\"request_id\":";
    json_text::append_quoted(out, call.request_id);
    out += ",\"url\":";
    json_text::append_quoted(out, call.url);
    out += ",\"body\":";
    json_text::append_quoted(out, call.body);
    out += ",\"status\":" + std::to_string(call.answer.status);
    out += ",\"answer\":";
    json_text::append_quoted(out, call.answer.body);
    out += ",\"error\":";
    json_text::append_quoted(out, call.answer.error);
    out += ",\"attempts\":" + std::to_string(call.answer.attempts);
    out += ",\"sent_at\":";
    append_time(out, call.answer.sent_at);
    out += ",\"answered_at\":";
    append_time(out, call.answer.answered_at);
    out += '}';
  }
  out += "]}";
  return out;
}

void mock_state::inject(const injected_load& load) {
  std::lock_guard lock(mutex_);
  injected_ = load;
}

vllm_metrics::snapshot mock_state::metrics_snapshot() const {
  vllm_metrics::snapshot s;
  s.model = config_.model;
  s.block_size = config_.block_size;
  s.prefix_caching = config_.prefix_cache_blocks != 0;
  s.num_gpu_blocks = config_.num_gpu_blocks > 0        ? config_.num_gpu_blocks
                     : config_.prefix_cache_blocks > 0 ? config_.prefix_cache_blocks
                                                       : 65536;
  s.prompt_tokens = static_cast<double>(prompt_tokens_.load());
  s.prefix_queries = s.prefix_caching ? s.prompt_tokens : 0;
  s.prefix_hits = s.prefix_caching ? static_cast<double>(cached_tokens_.load()) : 0;
  s.generation_tokens = static_cast<double>(generation_tokens_.load());
  s.request_success = static_cast<double>(generations_done_.load() + prefills_done_.load());

  injected_load injected;
  {
    std::lock_guard lock(mutex_);
    injected = injected_;
    s.ttft_counts = ttft_counts_;
    s.ttft_sum = ttft_sum_;
  }
  // The instance's own work is engine 0's; injected load is split over the engines, the first
  // taking the remainder, so a scraper that reads one label set only sees too little.
  const auto engines = static_cast<std::size_t>(std::max(1, config_.metrics_engines));
  s.engines.resize(engines);
  const double own_kv = std::min(
      1.0, static_cast<double>(busy_blocks_.load()) / static_cast<double>(s.num_gpu_blocks));
  auto split = [&](double total, std::size_t e) {
    const double share = std::floor(total / static_cast<double>(engines));
    return e == 0 ? total - share * static_cast<double>(engines - 1) : share;
  };
  for (std::size_t e = 0; e < engines; ++e) {
    vllm_metrics::engine_load& load = s.engines[e];
    load.running = split(injected.running, e);
    load.waiting = split(injected.waiting, e);
    load.kv_usage = injected.kv_usage.value_or(e == 0 ? own_kv : 0.0);
  }
  s.engines[0].running += static_cast<double>(busy_requests_.load());
  s.engines[0].waiting += static_cast<double>(gate_.waiting());
  return s;
}

void mock_state::reset() {
  std::lock_guard lock(mutex_);
  records_.clear();
  record_bytes_ = 0;
  injected_ = {};
  ttft_counts_ = {};
  ttft_sum_ = 0;
  metaserver_calls_.clear();
  metaserver_failed_ = 0;
  metrics_fault_ = initial_fault_;
  requests_ = 0;
  prefill_ = 0;
  decode_ = 0;
  plain_ = 0;
  client_disconnects_ = 0;
  metrics_requests_ = 0;
  prefills_done_ = 0;
  prompt_tokens_ = 0;
  cached_tokens_ = 0;
  generation_tokens_ = 0;
  generations_done_ = 0;
}

}  // namespace glm::mock
