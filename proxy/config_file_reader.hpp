#pragma once

#include <CLI/CLI.hpp>
#include <istream>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace glm::proxy {

// Reads a --config file for CLI11, stricter than CLI11's own reader, which takes `port = ` as port
// 0 and reports an unknown key as "INI was not able to parse ..." with neither file nor line.
//
// The file is the TOML subset glm-proxy documents: one `key = value` per line, keys spelled like
// the long flags, values a string ("..." or '...'), a number, true/false, or an array of those
// closed on the line it opens on; `#` comments. Anything else (an unknown or repeated key, an
// empty or malformed value, a value of the wrong kind for its flag, a [table]) throws
// CLI::ConfigError whose message starts with "line N: " and names the key; the caller adds the
// file name, which CLI11 does not pass to from_config().
//
// Not thread-safe: CLI11 calls it during App::parse() on one thread. line_of() answers for the
// last file read.
class config_file_reader final : public CLI::Config {
 public:
  enum class value_kind { text, number, boolean };
  struct key_info {
    value_kind kind = value_kind::text;
    bool list = false;  // takes several values: an array (a single value is a one-element list)
  };

  explicit config_file_reader(std::map<std::string, key_info, std::less<>> keys);

  // Writing config files is not offered (no --write-config flag); returns "".
  std::string to_config(const CLI::App*, bool, bool, std::string) const override;
  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override;

  // The line `key` (a long flag name without dashes) was read from in the last file, or 0.
  int line_of(std::string_view key) const;

 private:
  std::map<std::string, key_info, std::less<>> keys_;
  mutable std::map<std::string, int, std::less<>> lines_;
};

}  // namespace glm::proxy
