#include <catch2/catch.hpp>
#include <string>

#include "balancer/balancer.hpp"
#include "proxy/core/metrics.hpp"

using glm::balancer::backend_address;
using glm::balancer::balancer;
using namespace glm::proxy;

namespace {

bool has(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}

}  // namespace

TEST_CASE("the first scrape shows every known series at 0") {
  metrics m;
  balancer lb({{"10.0.0.1", 6700}}, {{"10.0.0.3", 6800}});
  const std::string text = m.serialize(lb);
  for (refusal_reason r : all_refusal_reasons) {
    INFO(to_string(r));
    CHECK(has(text, "glm_proxy_refusals_total{reason=\"" + std::string(to_string(r)) + "\"} 0"));
  }
  CHECK(has(text, R"(glm_proxy_requests_total{code="200",endpoint="/v1/completions"} 0)"));
  CHECK(has(text, R"(glm_proxy_request_duration_seconds_count{endpoint="/healthcheck"} 0)"));
  CHECK(has(text, R"(glm_proxy_request_duration_seconds_count{endpoint="invalid"} 0)"));
  CHECK(has(text, R"(glm_proxy_prefill_duration_seconds_count{backend="10.0.0.1:6700"} 0)"));
  CHECK(has(text, R"(glm_proxy_prefill_without_kv_total{backend="10.0.0.1:6700"} 0)"));
  CHECK(has(
      text,
      R"(glm_proxy_upstream_errors_total{backend="10.0.0.3:6800",kind="timeout",role="decode"} 0)"));
  CHECK(has(text, R"(glm_proxy_retries_total{role="prefill"} 0)"));
  CHECK(has(text, R"(glm_proxy_client_disconnects_total 0)"));
}

TEST_CASE("counts land on their typed labels") {
  metrics m;
  balancer lb({{"10.0.0.1", 6700}}, {{"10.0.0.3", 6800}});
  m.refused(refusal_reason::not_implemented);
  m.upstream_error(glm::balancer::role::prefill, "10.0.0.1:6700", failure_kind::bad_answer);
  m.request_done(endpoint::other, 404, 0.001);
  const std::string text = m.serialize(lb);
  CHECK(has(text, R"(glm_proxy_refusals_total{reason="not_implemented"} 1)"));
  CHECK(has(
      text,
      R"(glm_proxy_upstream_errors_total{backend="10.0.0.1:6700",kind="bad_answer",role="prefill"} 1)"));
  CHECK(has(text, R"(glm_proxy_requests_total{code="404",endpoint="other"} 1)"));
}

TEST_CASE("the engines' reports have series from the start and show what was read") {
  metrics m;
  {
    balancer off({{"10.0.0.1", 6700}}, {{"10.0.0.3", 6800}});
    const std::string text = m.serialize(off);
    CHECK(has(
        text,
        R"(glm_proxy_backend_reported{backend="10.0.0.1:6700",role="prefill",signal="waiting"} 0)"));
    CHECK(has(text, R"(glm_proxy_backend_metrics_up{backend="10.0.0.3:6800",role="decode"} 0)"));
    CHECK(has(
        text,
        R"(glm_proxy_backend_scrape_errors_total{backend="10.0.0.3:6800",reason="missing_kv_usage",role="decode"} 0)"));
    CHECK(has(text, "glm_proxy_prefill_fallbacks_total 0"));
  }
  balancer::options opts;
  opts.engine.interval = std::chrono::milliseconds(100);
  balancer on({{"10.0.0.1", 6700}}, {{"10.0.0.3", 6800}}, opts);
  const auto targets = on.scrape_targets();
  REQUIRE(targets.size() == 2);
  glm::balancer::engine_sample sample;
  sample.running = 3;
  sample.waiting = 7;
  sample.kv_usage = 0.5;
  sample.taken = std::chrono::steady_clock::now();
  on.engine_report(targets[0].id, sample);
  on.engine_scrape_failed(targets[1].id);
  m.scrape_error(targets[1].kind, targets[1].address.to_string(), "timeout");
  m.prefill_fallback();
  const std::string text = m.serialize(on);
  CHECK(has(
      text,
      R"(glm_proxy_backend_reported{backend="10.0.0.1:6700",role="prefill",signal="waiting"} 7)"));
  CHECK(has(
      text,
      R"(glm_proxy_backend_reported{backend="10.0.0.1:6700",role="prefill",signal="running"} 3)"));
  CHECK(has(
      text,
      R"(glm_proxy_backend_reported{backend="10.0.0.1:6700",role="prefill",signal="kv_usage"} 0.5)"));
  CHECK(has(text, R"(glm_proxy_backend_metrics_up{backend="10.0.0.1:6700",role="prefill"} 1)"));
  CHECK(has(text, R"(glm_proxy_backend_metrics_up{backend="10.0.0.3:6800",role="decode"} 0)"));
  CHECK(has(
      text,
      R"(glm_proxy_backend_scrape_errors_total{backend="10.0.0.3:6800",reason="timeout",role="decode"} 1)"));
  CHECK(has(text, "glm_proxy_prefill_fallbacks_total 1"));
}
