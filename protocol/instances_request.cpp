#include "protocol/instances_request.hpp"

#include <simdjson.h>

namespace glm::protocol {

std::optional<std::string> instances_request::parse(std::string_view body, instances_request& out) {
  // An operator's call, not the data path: a DOM parse of a padded copy is simplest.
  simdjson::dom::parser parser;
  simdjson::padded_string padded(body);
  simdjson::dom::element root;
  if (parser.parse(padded).get(root) != simdjson::SUCCESS || !root.is_object()) {
    return "request body is not a JSON object";
  }
  std::string_view type;
  if (root["type"].get_string().get(type) != simdjson::SUCCESS) {
    return "\"type\" must be \"prefill\" or \"decode\"";
  }
  out.type = std::string(type);
  out.instances.clear();
  simdjson::dom::element instances;
  if (root["instances"].get(instances) != simdjson::SUCCESS) {
    return "\"instances\" is required: a \"host:port\" string or a list of them";
  }
  std::string_view one;
  if (instances.get_string().get(one) == simdjson::SUCCESS) {
    out.instances.emplace_back(one);
  } else if (simdjson::dom::array list; instances.get_array().get(list) == simdjson::SUCCESS) {
    for (auto item : list) {
      if (item.get_string().get(one) != simdjson::SUCCESS) {
        return "\"instances\" must contain only \"host:port\" strings";
      }
      out.instances.emplace_back(one);
    }
  } else {
    return "\"instances\" must be a \"host:port\" string or a list of them";
  }
  if (out.instances.empty()) return "\"instances\" is empty";
  return std::nullopt;
}

}  // namespace glm::protocol
