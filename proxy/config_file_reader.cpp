#include "proxy/config_file_reader.hpp"

#include <cctype>
#include <optional>

namespace glm::proxy {
namespace {

using value_kind = config_file_reader::value_kind;

struct scalar {
  value_kind kind = value_kind::text;
  std::string text;  // a string unquoted and unescaped; a number without its underscores
};

[[noreturn]] void fail(int line, const std::string& message) {
  throw CLI::ConfigError("line " + std::to_string(line) + ": " + message);
}

bool is_key_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_';
}

void append_utf8(std::string& out, unsigned long cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Reads the values of one line. `pos` moves past what was read; errors name `key` and `line`.
class value_lexer {
 public:
  value_lexer(std::string_view text, int line, std::string_view key)
      : s_(text), line_(line), key_(key) {}

  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t')) ++pos_;
  }
  bool at_end_of_value() {
    skip_space();
    return pos_ == s_.size() || s_[pos_] == '#';
  }
  bool peek(char c) {
    skip_space();
    return pos_ < s_.size() && s_[pos_] == c;
  }
  void advance() { ++pos_; }
  void expect(char c, const char* what) {
    if (!peek(c)) error(std::string("expected ") + what);
    ++pos_;
  }

  scalar read_scalar() {
    skip_space();
    if (pos_ == s_.size() || s_[pos_] == '#') error("has no value");
    char c = s_[pos_];
    if (c == '"') return {value_kind::text, basic_string()};
    if (c == '\'') return {value_kind::text, literal_string()};
    if (c == '[') error("nested arrays are not supported");
    if (c == '{') error("inline tables are not supported");
    std::size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != ',' && s_[pos_] != ']' && s_[pos_] != '#' &&
           s_[pos_] != ' ' && s_[pos_] != '\t') {
      ++pos_;
    }
    std::string_view word = s_.substr(start, pos_ - start);
    if (word == "true" || word == "false") return {value_kind::boolean, std::string(word)};
    if (auto number = toml_number(word)) return {value_kind::number, *number};
    error("'" + std::string(word) + "' is not a value (a string needs quotes)");
  }

  [[noreturn]] void error(const std::string& what) const {
    fail(line_, "'" + std::string(key_) + "' " + what);
  }

 private:
  std::string basic_string() {
    if (s_.substr(pos_, 3) == "\"\"\"") error("multi-line strings are not supported");
    ++pos_;
    std::string out;
    while (pos_ < s_.size() && s_[pos_] != '"') {
      char c = s_[pos_++];
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ == s_.size()) break;
      char e = s_[pos_++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'u':
        case 'U': {
          std::size_t digits = e == 'u' ? 4 : 8;
          if (pos_ + digits > s_.size())
            error("has a truncated \\" + std::string(1, e) + " escape");
          unsigned long cp = 0;
          for (std::size_t i = 0; i < digits; ++i) {
            char h = s_[pos_ + i];
            if (std::isxdigit(static_cast<unsigned char>(h)) == 0) error("has a bad escape");
            cp = cp * 16 + static_cast<unsigned long>(
                               std::isdigit(static_cast<unsigned char>(h)) != 0
                                   ? h - '0'
                                   : std::tolower(static_cast<unsigned char>(h)) - 'a' + 10);
          }
          if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) error("has a bad escape");
          pos_ += digits;
          append_utf8(out, cp);
          break;
        }
        default:
          error("has an unknown escape \\" + std::string(1, e));
      }
    }
    if (pos_ == s_.size()) error("has an unterminated string");
    ++pos_;
    return out;
  }

  std::string literal_string() {
    if (s_.substr(pos_, 3) == "'''") error("multi-line strings are not supported");
    std::size_t close = s_.find('\'', pos_ + 1);
    if (close == std::string_view::npos) error("has an unterminated string");
    std::string out(s_.substr(pos_ + 1, close - pos_ - 1));
    pos_ = close + 1;
    return out;
  }

  // TOML's decimal integers and floats (underscores between digits, inf, nan); nullopt otherwise.
  static std::optional<std::string> toml_number(std::string_view w) {
    std::string out;
    std::size_t i = 0;
    if (i < w.size() && (w[i] == '+' || w[i] == '-')) out += w[i++];
    std::string_view rest = w.substr(i);
    if (rest == "inf" || rest == "nan") return out + std::string(rest);
    auto digits = [&](bool required) {
      std::size_t n = 0;
      while (i < w.size()) {
        if (std::isdigit(static_cast<unsigned char>(w[i])) != 0) {
          out += w[i++];
          ++n;
        } else if (w[i] == '_' && n > 0 && i + 1 < w.size() &&
                   std::isdigit(static_cast<unsigned char>(w[i + 1])) != 0) {
          ++i;
        } else {
          break;
        }
      }
      return n > 0 || !required;
    };
    if (!digits(true)) return std::nullopt;
    if (i < w.size() && w[i] == '.') {
      out += w[i++];
      if (!digits(true)) return std::nullopt;
    }
    if (i < w.size() && (w[i] == 'e' || w[i] == 'E')) {
      out += w[i++];
      if (i < w.size() && (w[i] == '+' || w[i] == '-')) out += w[i++];
      if (!digits(true)) return std::nullopt;
    }
    if (i != w.size()) return std::nullopt;
    return out;
  }

  std::string_view s_;
  std::size_t pos_ = 0;
  int line_;
  std::string_view key_;
};

const char* kind_name(value_kind k) {
  switch (k) {
    case value_kind::number:
      return "a number";
    case value_kind::boolean:
      return "true or false";
    case value_kind::text:
      break;
  }
  return "a string in quotes";
}

}  // namespace

config_file_reader::config_file_reader(std::map<std::string, key_info, std::less<>> keys)
    : keys_(std::move(keys)) {}

std::string config_file_reader::to_config(const CLI::App*, bool, bool, std::string) const {
  return {};
}

int config_file_reader::line_of(std::string_view key) const {
  auto it = lines_.find(key);
  return it == lines_.end() ? 0 : it->second;
}

std::vector<CLI::ConfigItem> config_file_reader::from_config(std::istream& input) const {
  lines_.clear();
  std::vector<CLI::ConfigItem> read;
  std::string raw;
  int line = 0;
  while (std::getline(input, raw)) {
    ++line;
    std::string_view text(raw);
    if (line == 1 && text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // a UTF-8 BOM
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    std::size_t start = text.find_first_not_of(" \t");
    if (start == std::string_view::npos || text[start] == '#') continue;
    text.remove_prefix(start);
    if (text.front() == '[') fail(line, "tables ([section]) are not supported; write key = value");
    std::size_t key_end = 0;
    while (key_end < text.size() && is_key_char(text[key_end])) ++key_end;
    std::string key(text.substr(0, key_end));
    std::size_t eq = text.find_first_not_of(" \t", key_end);
    if (key.empty() || eq == std::string_view::npos || text[eq] != '=') {
      std::string shown(text.substr(0, text.find_first_of(" \t=")));
      fail(line, "'" + shown + "' is not a key = value line");
    }
    auto known = keys_.find(key);
    if (known == keys_.end()) {
      std::string hint;
      std::string dashed = key;
      for (char& c : dashed) c = c == '_' ? '-' : c;
      if (dashed != key && keys_.count(dashed) != 0)
        hint = " (flags are spelled with dashes: '" + dashed + "')";
      fail(line, "unknown key '" + key + "'" + hint + "; see glm-proxy --help");
    }
    if (auto first = lines_.find(key); first != lines_.end()) {
      fail(line,
           "'" + key + "' is set twice (first on line " + std::to_string(first->second) + ")");
    }
    lines_.emplace(key, line);

    value_lexer lex(text.substr(eq + 1), line, key);
    std::vector<scalar> values;
    bool array = lex.peek('[');
    if (array) {
      lex.advance();
      while (!lex.peek(']')) {
        if (lex.at_end_of_value()) lex.error("has an array that does not close on its line");
        values.push_back(lex.read_scalar());
        if (!lex.peek(',')) break;
        lex.advance();
      }
      lex.expect(']', "',' or ']' in the array");
    } else {
      values.push_back(lex.read_scalar());
    }
    if (!lex.at_end_of_value()) lex.error("has text after its value");

    const key_info& want = known->second;
    if (array && !want.list) lex.error("takes one value, not an array");
    if (array && values.empty()) lex.error("has an empty array");
    CLI::ConfigItem item;
    item.name = key;
    for (auto& v : values) {
      if (v.kind != want.kind) lex.error(std::string("must be ") + kind_name(want.kind));
      item.inputs.push_back(std::move(v.text));
    }
    read.push_back(std::move(item));
  }
  return read;
}

}  // namespace glm::proxy
