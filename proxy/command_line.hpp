#pragma once

#include <optional>
#include <string>

#include "proxy/config.hpp"

namespace glm::proxy {

// Fills `out` from argv and the environment. Returns nullopt to go on, or the exit code to leave
// with at once: 0 after --help, 2 after a usage error (CLI11's parse errors, or prefiller/decoder
// host and port lists of different lengths), with the message already printed.
std::optional<int> parse_command_line(int argc, char** argv, config& out);

// One line naming every setting in effect (never the API key itself), for the start-up log.
std::string effective_configuration(const config& c);

}  // namespace glm::proxy
