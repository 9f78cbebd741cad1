// http_session, part: the endpoints tests and benchmarks use (/mock/*, /metrics).
#include "bench/mock_vllm/http_session.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <memory>
#include <tuple>
#include <utility>
#include <variant>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>

#include <simdjson.h>

#include "bench/mock_vllm/asio_names.hpp"
#include "bench/mock_vllm/json_text.hpp"
#include "bench/mock_vllm/metaserver_client.hpp"
#include "bench/mock_vllm/prompt_renderer.hpp"

namespace glm::mock {

using namespace net::experimental::awaitable_operators;

net::awaitable<http_session::next> http_session::answer_mock_endpoint(const request& req,
                                                                      std::string_view path) {
  const bool keep_alive = req.keep_alive();
  const http::verb method = req.method();
  if (path == "/mock/requests" && method == http::verb::get) {
    co_return co_await write_response(200, "application/json", state_.requests_json(), keep_alive);
  }
  if (path == "/mock/stats" && method == http::verb::get) {
    co_return co_await write_response(200, "application/json", state_.stats_json(), keep_alive);
  }
  if (path == "/mock/reset" && method == http::verb::post) {
    state_.reset();
    co_return co_await write_response(200, "", "", keep_alive);
  }
  if (path == "/mock/load" && method == http::verb::post) co_return co_await answer_load(req);
  co_return co_await write_error(404, "Not Found", keep_alive);
}

net::awaitable<http_session::next> http_session::answer_metrics(bool keep_alive) {
  state_.count_metrics_request();
  static constexpr std::string_view text_format = "text/plain; version=0.0.4; charset=utf-8";
  const metrics_fault fault = state_.current_metrics_fault();
  switch (fault) {
    case metrics_fault::status_500:
      co_return co_await write_response(500, "text/plain", "Internal Server Error", keep_alive);
    case metrics_fault::hang:
      co_return co_await hang();
    case metrics_fault::garbage: {
      // Not Prometheus text: HTML, binary bytes, JSON, and a sample line with an unclosed label
      // set that a careless line parser would half-read.
      static constexpr char garbage[] =
          "<html><body>502 Bad Gateway</body></html>\n\x00\x01\xff{\"running\": 3}\n"
          "vllm:num_requests_running{engine=\"0\" 7.0\n";
      co_return co_await write_response(200, text_format, std::string(garbage, sizeof garbage - 1),
                                        keep_alive);
    }
    default:
      co_return co_await write_response(
          200, text_format, vllm_metrics::render(state_.metrics_snapshot(), fault), keep_alive);
  }
}

net::awaitable<http_session::next> http_session::answer_load(const request& req) {
  // {"running":N,"waiting":N,"kv_usage":F|null,"metrics_fault":"..."}: every member optional; the
  // injected load is replaced as a whole (absent counts as 0, kv_usage as the instance's own).
  const bool keep_alive = req.keep_alive();
  thread_local simdjson::ondemand::parser parser;
  const simdjson::padded_string padded(req.body());
  simdjson::ondemand::document doc;
  simdjson::ondemand::object object;
  if (parser.iterate(padded).get(doc) || doc.get_object().get(object)) {
    co_return co_await write_error(400, "mock/load: the body must be a JSON object", keep_alive);
  }
  injected_load load;
  std::optional<metrics_fault> fault;
  for (auto field_result : object) {
    simdjson::ondemand::field field;
    std::string_view key;
    if (std::move(field_result).get(field) || field.unescaped_key().get(key)) {
      co_return co_await write_error(400, "mock/load: invalid JSON", keep_alive);
    }
    if (key == "running" || key == "waiting" || key == "kv_usage") {
      if (key == "kv_usage" && field.value().is_null()) continue;
      double v = 0;
      if (field.value().get_double().get(v)) {
        co_return co_await write_error(400, "mock/load: " + std::string(key) + " must be a number",
                                       keep_alive);
      }
      (key == "running"   ? load.running
       : key == "waiting" ? load.waiting
                          : load.kv_usage.emplace()) = v;
    } else if (key == "metrics_fault") {
      std::string_view name;
      if (field.value().get_string().get(name) || !(fault = vllm_metrics::parse_fault(name))) {
        co_return co_await write_error(
            400,
            "mock/load: metrics_fault must be one of none, 500, hang, garbage, nan, missing, huge",
            keep_alive);
      }
    }
  }
  state_.inject(load);
  if (fault) state_.set_metrics_fault(*fault);
  co_return co_await write_response(200, "", "", keep_alive);
}

}  // namespace glm::mock
