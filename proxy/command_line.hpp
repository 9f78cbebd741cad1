#pragma once

#include <optional>
#include <string>

#include "proxy/config.hpp"

namespace glm::proxy {

// Fills `out` from argv, the TOML file given with --config and the environment (GLM_PROXY_<FLAG>),
// in that order of precedence. Returns nullopt to go on, or the exit code to leave with at once:
// 0 after --help or --version (printed on stdout), 2 after a usage error (printed on stderr): an
// unknown flag, a value out of its range (the message names the flag, and the file and line or
// the environment variable it came from), an unknown key or a malformed value in the file, or
// prefiller/decoder host and port lists of different lengths.
std::optional<int> parse_command_line(int argc, char** argv, config& out);

// For SIGHUP: reads the same sources again, as at start (the file may have changed; argv and the
// environment cannot). Fills `out` and returns nullopt, or returns the usage error's message and
// leaves `out` unspecified. Prints nothing. argv must be main()'s, alive for the whole process.
std::optional<std::string> reread_configuration(int argc, char** argv, config& out);

// One line naming every setting in effect (never the API key itself), for the start-up log.
std::string effective_configuration(const config& c);

}  // namespace glm::proxy
