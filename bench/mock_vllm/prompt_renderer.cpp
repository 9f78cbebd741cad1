#include "bench/mock_vllm/prompt_renderer.hpp"

#include <cstdint>
#include <utility>

#include <simdjson.h>

namespace glm::mock {
namespace {

namespace od = simdjson::ondemand;

void append_token_id(std::string& out, std::uint64_t id) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>((id >> (8 * i)) & 0xff);
}

bool render_prompt(od::value prompt, std::string& out) {
  od::json_type type;
  if (prompt.type().get(type)) return false;
  if (type == od::json_type::string) {
    std::string_view s;
    if (prompt.get_string().get(s)) return false;
    out += s;
    return true;
  }
  od::array items;
  if (prompt.get_array().get(items)) return false;
  bool first = true;
  for (auto item_result : items) {
    od::value item;
    if (std::move(item_result).get(item) || item.type().get(type)) return false;
    if (type == od::json_type::string) {
      std::string_view s;
      if (item.get_string().get(s)) return false;
      if (!first) out += '\n';
      out += s;
    } else if (type == od::json_type::number) {
      std::uint64_t id = 0;
      if (item.get_uint64().get(id)) return false;
      append_token_id(out, id);
    } else if (type == od::json_type::array) {
      od::array ids;
      if (item.get_array().get(ids)) return false;
      for (auto id_result : ids) {
        std::uint64_t id = 0;
        if (id_result.get_uint64().get(id)) return false;
        append_token_id(out, id);
      }
    } else {
      return false;
    }
    first = false;
  }
  return true;
}

bool render_messages(od::value messages, std::string& out) {
  od::array list;
  if (messages.get_array().get(list)) return false;
  for (auto message_result : list) {
    od::object message;
    if (message_result.get_object().get(message)) return false;
    // "role" may come after "content": collect both, then write.
    std::string_view role;
    std::string text;
    for (auto field_result : message) {
      od::field field;
      std::string_view key;
      if (std::move(field_result).get(field) || field.unescaped_key().get(key)) return false;
      if (key == "role") {
        // On-Demand unescapes each string to its own place in the parser's string buffer, which
        // lives until the next document: the view stays valid.
        if (field.value().get_string().get(role)) return false;
        continue;
      }
      if (key != "content") continue;
      od::json_type type;
      if (field.value().type().get(type)) return false;
      if (type == od::json_type::string) {
        std::string_view s;
        if (field.value().get_string().get(s)) return false;
        text += s;
      } else if (type == od::json_type::array) {
        od::array parts;
        if (field.value().get_array().get(parts)) return false;
        for (auto part : parts) {
          std::string_view s;
          if (part["text"].get_string().get(s) == simdjson::SUCCESS) text += s;
        }
      }
    }
    out += "<|";
    out += role;
    out += "|>\n";
    out += text;
    out += "<|end|>\n";
  }
  out += "<|assistant|>\n";
  return true;
}

}  // namespace

bool prompt_renderer::render(std::string_view body, bool chat, std::string& out) {
  thread_local od::parser parser;
  const simdjson::padded_string padded(body);
  od::document doc;
  od::object object;
  if (parser.iterate(padded).get(doc) || doc.get_object().get(object)) return false;
  std::string tools;
  std::string rendered;
  bool found = false;
  for (auto field_result : object) {
    od::field field;
    std::string_view key;
    if (std::move(field_result).get(field) || field.unescaped_key().get(key)) return false;
    if (chat && key == "tools") {
      // The raw bytes: a real template renders the tool definitions into the prompt.
      od::json_type type;
      std::string_view raw;
      if (field.value().type().get(type)) return false;
      od::array array;
      od::object members;
      if (type == od::json_type::array) {
        if (field.value().get_array().get(array) || array.raw_json().get(raw)) return false;
      } else if (type == od::json_type::object) {
        if (field.value().get_object().get(members) || members.raw_json().get(raw)) return false;
      } else {
        raw = field.value().raw_json_token();
      }
      if (type != od::json_type::null) tools.assign(raw);
    } else if (chat && key == "messages") {
      found = render_messages(field.value(), rendered);
      if (!found) return false;
    } else if (!chat && key == "prompt") {
      found = render_prompt(field.value(), rendered);
      if (!found) return false;
    }
  }
  if (!tools.empty()) {
    // Trailing whitespace of the raw value belongs to the body's layout, not to the tools.
    while (!tools.empty() && (tools.back() == ' ' || tools.back() == '\n' || tools.back() == '\r' ||
                              tools.back() == '\t')) {
      tools.pop_back();
    }
    out += "<|tools|>\n" + tools + "<|end|>\n";
  }
  out += rendered;
  return found;
}

}  // namespace glm::mock
