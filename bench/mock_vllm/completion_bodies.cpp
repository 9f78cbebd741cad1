#include "bench/mock_vllm/completion_bodies.hpp"

#include "bench/mock_vllm/json_text.hpp"

namespace glm::mock {

completion_bodies::completion_bodies(const mock_config& config, bool chat, std::string request_id)
    : config_(config), chat_(chat), id_(std::move(request_id)), created_(std::time(nullptr)) {}

void completion_bodies::append_head(std::string& out, std::string_view object) const {
  out += "{\"id\":";
  json_text::append_quoted(out, "cmpl-" + id_);
  out += ",\"object\":\"";
  out += object;
  out += "\",\"created\":";
  out += std::to_string(created_);
  out += ",\"model\":";
  json_text::append_quoted(out, config_.model);
}

void completion_bodies::append_usage(std::string& out, std::int64_t prompt_tokens,
                                     std::int64_t tokens, std::int64_t cached_tokens,
                                     bool total_first) {
  // Key order as vLLM writes it: a prefill's usage lists total before completion tokens.
  const std::string total = ",\"total_tokens\":" + std::to_string(prompt_tokens + tokens);
  const std::string completion = ",\"completion_tokens\":" + std::to_string(tokens);
  out += "\"usage\":{\"prompt_tokens\":" + std::to_string(prompt_tokens);
  out += total_first ? total + completion : completion + total;
  out += ",\"prompt_tokens_details\":{\"cached_tokens\":" + std::to_string(cached_tokens) + "}}";
}

std::string completion_bodies::prefill(std::int64_t prompt_tokens, std::int64_t cached_tokens,
                                       bool with_kv) const {
  std::string out;
  append_head(out, chat_ ? "chat.completion" : "text_completion");
  out += chat_ ? ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\" "
                 "tok0\"},\"finish_reason\":\"length\",\"stop_reason\":null}],"
               : ",\"choices\":[{\"index\":0,\"text\":\" tok0\",\"finish_reason\":\"length\","
                 "\"stop_reason\":null}],";
  append_usage(out, prompt_tokens, 1, cached_tokens, true);
  if (!with_kv) {
    out += ",\"kv_transfer_params\":null}";
    return out;
  }
  out +=
      ",\"kv_transfer_params\":{\"do_remote_prefill\":true,\"do_remote_decode\":false,"
      "\"remote_block_ids\":[[1,2,3]],\"remote_engine_id\":";
  json_text::append_quoted(out, config_.engine_id);
  out += ",\"remote_request_id\":";
  json_text::append_quoted(out, id_);
  out += ",\"remote_host\":";
  json_text::append_quoted(out, config_.listen_host);
  out += ",\"remote_port\":" + std::to_string(config_.listen_port) + ",\"tp_size\":1}}";
  return out;
}

std::string completion_bodies::full(std::int64_t prompt_tokens, std::int64_t first,
                                    std::int64_t tokens, std::int64_t cached_tokens,
                                    bool recomputed) const {
  std::string text;
  for (std::int64_t i = first; i < first + tokens; ++i) text += " tok" + std::to_string(i);
  std::string out;
  append_head(out, chat_ ? "chat.completion" : "text_completion");
  if (chat_) {
    out += ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":";
    json_text::append_quoted(out, text);
    out += "},";
  } else {
    out += ",\"choices\":[{\"index\":0,\"text\":";
    json_text::append_quoted(out, text);
    out += ',';
  }
  out += recomputed
             ? "\"logprobs\":null,\"finish_reason\":\"stop\",\"stop_reason\":\"recomputed\"}],"
             : "\"logprobs\":null,\"finish_reason\":\"length\",\"stop_reason\":null}],";
  append_usage(out, prompt_tokens, tokens, cached_tokens, false);
  out += '}';
  return out;
}

std::string completion_bodies::token_event(std::int64_t index, bool last) const {
  std::string out = "data: ";
  append_head(out, chat_ ? "chat.completion.chunk" : "text_completion");
  const std::string token = "\" tok" + std::to_string(index) + '"';
  if (chat_) {
    out += ",\"choices\":[{\"index\":0,\"delta\":{";
    if (index == 0) out += "\"role\":\"assistant\",";
    out += "\"content\":" + token + "},\"logprobs\":null,\"finish_reason\":";
    out += last ? "\"length\"}]}" : "null}]}";
  } else {
    out += ",\"choices\":[{\"index\":0,\"text\":" + token + ",\"logprobs\":null,\"finish_reason\":";
    out += last ? "\"length\"" : "null";
    out += ",\"stop_reason\":null}]}";
  }
  out += "\n\n";
  return out;
}

std::string completion_bodies::recomputed_event() const {
  std::string out = "data: ";
  append_head(out, chat_ ? "chat.completion.chunk" : "text_completion");
  out += chat_ ? ",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,"
                 "\"finish_reason\":\"stop\",\"stop_reason\":\"recomputed\"}]}\n\n"
               : ",\"choices\":[{\"index\":0,\"text\":\"\",\"logprobs\":null,"
                 "\"finish_reason\":\"stop\",\"stop_reason\":\"recomputed\"}]}\n\n";
  return out;
}

std::string completion_bodies::usage_event(std::int64_t prompt_tokens, std::int64_t tokens,
                                           std::int64_t cached_tokens) const {
  std::string out = "data: ";
  append_head(out, chat_ ? "chat.completion.chunk" : "text_completion");
  out += ",\"choices\":[],";
  append_usage(out, prompt_tokens, tokens, cached_tokens, false);
  out += "}\n\n";
  return out;
}

std::string_view completion_bodies::error_type(int status) {
  switch (status) {
    case 400:
      return "BadRequestError";
    case 404:
      return "NotFoundError";
    case 405:
      return "MethodNotAllowed";
    case 413:
      return "RequestEntityTooLarge";
    case 503:
      return "ServiceUnavailableError";
    case 504:
      return "GatewayTimeout";
    default:
      return status < 500 ? "BadRequestError" : "InternalServerError";
  }
}

std::string completion_bodies::error(std::string_view message, int status) {
  std::string out = "{\"error\":{\"message\":";
  json_text::append_quoted(out, message);
  out += ",\"type\":\"";
  out += error_type(status);
  out += "\",\"param\":null,\"code\":" + std::to_string(status) + "}}";
  return out;
}

}  // namespace glm::mock
