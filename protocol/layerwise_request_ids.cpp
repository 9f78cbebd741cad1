#include "protocol/layerwise_request_ids.hpp"

#include "protocol/json_scan.hpp"

namespace glm::protocol {

namespace {

using detail::is_json_ws;

// Elements of a JSON array in text that request_splicer::parse has already validated, so only
// boundaries are found, never grammar checked: strings are skipped over their escapes, containers
// by bracket depth. Every step moves forward, so the walk ends whatever the text.
struct array_shape {
  std::size_t elements = 0;
  bool all_numbers = true;
};

array_shape shape_of(std::string_view a) {
  array_shape shape;
  std::size_t p = 1;  // past '['
  const std::size_t n = a.size();
  auto skip_ws = [&] {
    while (p < n && is_json_ws(a[p])) ++p;
  };
  auto skip_string = [&] {
    ++p;
    while (p < n && a[p] != '"') p += a[p] == '\\' ? 2 : 1;
    ++p;
  };
  for (;;) {
    skip_ws();
    if (p >= n || a[p] == ']') break;
    const char c = a[p];
    ++shape.elements;
    if (!(c == '-' || (c >= '0' && c <= '9'))) shape.all_numbers = false;
    if (c == '"') {
      skip_string();
    } else if (c == '[' || c == '{') {
      std::size_t depth = 0;
      while (p < n) {
        const char d = a[p];
        if (d == '"') {
          skip_string();
          continue;
        }
        ++p;
        if (d == '[' || d == '{') {
          ++depth;
        } else if ((d == ']' || d == '}') && --depth == 0) {
          break;
        }
      }
    } else {
      while (p < n && a[p] != ',' && a[p] != ']' && !is_json_ws(a[p])) ++p;
    }
    skip_ws();
    if (p < n && a[p] == ',') ++p;
  }
  return shape;
}

}  // namespace

std::size_t layerwise_request_ids::prompt_count(const client_request& req) {
  const member_range* prompt = req.find("prompt");
  if (prompt == nullptr) return 1;
  const std::string_view value =
      req.body.substr(prompt->value_begin, prompt->end - prompt->value_begin);
  if (value.empty() || value.front() != '[') return 1;
  const array_shape shape = shape_of(value);
  if (shape.elements == 0 || shape.all_numbers) return 1;
  return shape.elements;
}

void layerwise_request_ids::ids(const client_request& req, bool chat, std::string_view backend_id,
                                std::vector<std::string>& out) {
  out.clear();
  if (chat) {
    out.push_back("chatcmpl-" + std::string(backend_id));
    return;
  }
  const std::size_t n = prompt_count(req);
  out.reserve(n);
  std::string prefix = "cmpl-" + std::string(backend_id) + "-";
  for (std::size_t i = 0; i < n; ++i) out.push_back(prefix + std::to_string(i));
}

}  // namespace glm::protocol
