#pragma once

#include <string>
#include <string_view>

#include "proxy/core/access_record.hpp"

namespace glm::proxy {

// Sets up spdlog for the whole process: `level` as --log-level takes it, `format` "text" or
// "json". JSON is one object per line: {"ts","level","request_id"?,"msg"} for messages and
// {"ts","level","type":"access",...fields} for access lines.
//
// A message about a request starts with "[<id>] " (every call site does this); the JSON format
// moves that id into its own "request_id" field, so log pipelines can join a request's lines.
void setup_logging(const std::string& level, const std::string& format);

// Changes the level of every logger (--log-level's names), e.g. on SIGHUP. Thread-safe.
void set_log_level(const std::string& level);

// Writes `message` as an INFO line whatever the level: what an operator must always see (the
// listening address, the configuration in effect, what a reload did). Thread-safe.
void log_always(std::string_view message);

// Writes one access line. Cheap when INFO is off; thread-safe (spdlog's sinks lock).
void log_access(const access_record& r);

}  // namespace glm::proxy
