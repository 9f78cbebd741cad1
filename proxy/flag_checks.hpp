#pragma once

#include <CLI/CLI.hpp>
#include <string>

// The checks of flag values that CLI11 does not have, shared by every flag of command_line.
// CLI11 prefixes the flag's name to their messages.
namespace glm::proxy::flag_checks {

// A finite number within [lo, hi] (lo excluded when `lo_open`), checked on the text.
CLI::Validator number_in(double lo, double hi, bool lo_open = false);
// A non-empty header-safe token: visible ASCII, no spaces.
CLI::Validator bearer_token();
// An http:// or https:// URL of visible ASCII without spaces.
CLI::Validator metaserver_url();
CLI::Validator not_empty();
// 0.0.0.0, ::, [::] and the like: an address to listen on, never one to call.
bool is_wildcard(std::string host);

}  // namespace glm::proxy::flag_checks
