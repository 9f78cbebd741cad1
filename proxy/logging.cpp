#include "proxy/logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <memory>

#include "protocol/json_error.hpp"

namespace glm::proxy {
namespace {

spdlog::level::level_enum to_spdlog_level(const std::string& level) {
  if (level == "DEBUG") return spdlog::level::debug;
  if (level == "WARNING") return spdlog::level::warn;
  if (level == "ERROR") return spdlog::level::err;
  if (level == "CRITICAL") return spdlog::level::critical;
  return spdlog::level::info;
}

bool json_logs = false;  // set once at start, before any thread runs

// The "%*" flag of the JSON pattern: the message as JSON fields, with a leading "[id] " moved
// into "request_id" and everything escaped (messages quote backend errors and client input).
class json_message_flag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string_view text(msg.payload.data(), msg.payload.size());
    std::string out;
    out.reserve(text.size() + 32);
    if (text.size() > 3 && text.front() == '[') {
      if (auto close = text.find("] "); close != std::string_view::npos && close < 130) {
        out += "\"request_id\":\"";
        protocol::json_error::escape_into(out, text.substr(1, close - 1));
        out += "\",";
        text.remove_prefix(close + 2);
      }
    }
    out += "\"msg\":\"";
    protocol::json_error::escape_into(out, text);
    out += '"';
    dest.append(out.data(), out.data() + out.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<json_message_flag>();
  }
};

constexpr const char* json_time = R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l",)";

std::shared_ptr<spdlog::logger>& access_logger() {
  static std::shared_ptr<spdlog::logger> logger;
  return logger;
}

void append_json_string(std::string& out, const char* key, std::string_view value) {
  out += '"';
  out += key;
  out += "\":\"";
  protocol::json_error::escape_into(out, value);
  out += "\",";
}

}  // namespace

void setup_logging(const std::string& level, const std::string& format) {
  json_logs = format == "json";
  // spdlog keeps the formatter in the sink, so each logger needs a sink of its own. The stdout
  // sinks all take spdlog's one console mutex, so lines never interleave. Plain stdout (no colour
  // codes) for JSON; the usual colour sink for people.
  auto make_sink = []() -> spdlog::sink_ptr {
    if (json_logs) return std::make_shared<spdlog::sinks::stdout_sink_mt>();
    return std::make_shared<spdlog::sinks::stdout_color_sink_mt>();
  };
  auto main = std::make_shared<spdlog::logger>("glm-proxy", make_sink());
  auto access = std::make_shared<spdlog::logger>("access", make_sink());
  if (json_logs) {
    auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    formatter->add_flag<json_message_flag>('*').set_pattern(std::string(json_time) + "%*}");
    main->set_formatter(std::move(formatter));
    access->set_formatter(std::make_unique<spdlog::pattern_formatter>(
        std::string(json_time) + "%v}", spdlog::pattern_time_type::utc));
  }
  for (auto& logger : {main, access}) {
    logger->set_level(to_spdlog_level(level));
    logger->flush_on(spdlog::level::info);
  }
  spdlog::set_default_logger(main);
  access_logger() = access;
}

void set_log_level(const std::string& level) {
  // spdlog's levels are atomics: setting them while other threads log is safe.
  spdlog::default_logger()->set_level(to_spdlog_level(level));
  if (auto& access = access_logger()) access->set_level(to_spdlog_level(level));
}

void log_always(std::string_view message) {
  // Straight to the sinks, past the logger's level; the sinks' own levels stay at trace and their
  // formatters give the usual text or JSON line.
  auto logger = spdlog::default_logger();
  spdlog::details::log_msg msg(logger->name(), spdlog::level::info, message);
  for (auto& sink : logger->sinks()) {
    if (sink->should_log(msg.level)) sink->log(msg);
  }
  logger->flush();
}

void log_access(const access_record& r) {
  auto& logger = access_logger();
  if (!logger || !logger->should_log(spdlog::level::info)) return;
  auto ms = [](double s) { return s * 1000.0; };
  if (json_logs) {
    std::string out = "\"type\":\"access\",";
    out.reserve(384);
    append_json_string(out, "request_id", r.id);
    append_json_string(out, "client", r.client);
    append_json_string(out, "method", r.method);
    append_json_string(out, "endpoint", r.endpoint);
    out += fmt::format("\"status\":{},", r.status);
    append_json_string(out, "prefiller", r.prefiller);
    append_json_string(out, "decoder", r.decoder);
    out += fmt::format("\"prompt_bytes\":{},", r.prompt_bytes);
    if (r.ttft_seconds) {
      out += fmt::format("\"ttft_ms\":{:.3f},", ms(*r.ttft_seconds));
    } else {
      out += "\"ttft_ms\":null,";
    }
    out += fmt::format("\"duration_ms\":{:.3f},\"events\":{},", ms(r.duration_seconds), r.events);
    append_json_string(out, "prefill_route", r.prefill_route);
    append_json_string(out, "decode_route", r.decode_route);
    out += fmt::format("\"predicted_tokens\":{},", r.predicted_tokens);
    append_json_string(out, "ending", r.ending);
    out.pop_back();  // the last field's comma
    logger->info(out);
    return;
  }
  auto dash = [](std::string_view s) { return s.empty() ? std::string_view("-") : s; };
  logger->info(
      "[{}] access client={} method={} endpoint={} status={} prefiller={} decoder={} "
      "prompt_bytes={} ttft_ms={} duration_ms={:.3f} events={} ending={} prefill_route={} "
      "decode_route={} predicted_tokens={}",
      dash(r.id), dash(r.client), dash(r.method), dash(r.endpoint), r.status, dash(r.prefiller),
      dash(r.decoder), r.prompt_bytes,
      r.ttft_seconds ? fmt::format("{:.3f}", ms(*r.ttft_seconds)) : std::string("-"),
      ms(r.duration_seconds), r.events, r.ending, dash(r.prefill_route), dash(r.decode_route),
      r.predicted_tokens);
}

}  // namespace glm::proxy
