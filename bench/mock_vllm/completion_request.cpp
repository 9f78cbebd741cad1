#include "bench/mock_vllm/completion_request.hpp"

#include <utility>

#include <simdjson.h>

namespace glm::mock {
namespace {

namespace od = simdjson::ondemand;

// Far beyond any max_model_len: a typo must not make the mock build a gigabyte of text.
constexpr std::int64_t max_generated_tokens = 1'000'000;

// Whitespace-separated words of a prompt. Tallies in one pass (a prompt can be MiBs) both all
// words and those of the form "tok<digits>", the tokens this mock generates.
struct word_count {
  std::int64_t words = 0;
  std::int64_t tok_words = 0;

  void add(std::string_view s) {
    constexpr std::string_view tok = "tok";
    std::size_t start = 0;
    bool in_word = false;
    for (std::size_t i = 0; i <= s.size(); ++i) {
      const char c = i < s.size() ? s[i] : ' ';
      const bool space = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
      if (!space && !in_word) {
        ++words;
        start = i;
      }
      if (space && in_word) {
        const std::string_view word = s.substr(start, i - start);
        if (word.size() > tok.size() && word.starts_with(tok) &&
            word.find_first_not_of("0123456789", tok.size()) == std::string_view::npos) {
          ++tok_words;
        }
      }
      in_word = !space;
    }
  }
};

// A prompt is a string, a list of strings, a list of token ids, or a list of token-id lists.
simdjson::error_code count_prompt(od::value prompt, word_count& words) {
  od::json_type type;
  if (auto ec = prompt.type().get(type)) return ec;
  if (type == od::json_type::string) {
    std::string_view s;
    if (auto ec = prompt.get_string().get(s)) return ec;
    words.add(s);
    return simdjson::SUCCESS;
  }
  if (type != od::json_type::array) return simdjson::SUCCESS;
  od::array items;
  if (auto ec = prompt.get_array().get(items)) return ec;
  for (auto item_result : items) {
    od::value item;
    if (auto ec = std::move(item_result).get(item)) return ec;
    if (auto ec = item.type().get(type)) return ec;
    if (type == od::json_type::string) {
      if (auto ec = count_prompt(item, words)) return ec;
    } else if (type == od::json_type::array) {
      size_t n = 0;
      if (auto ec = item.count_elements().get(n)) return ec;
      words.words += static_cast<std::int64_t>(n);
    } else {
      ++words.words;  // a token id
    }
  }
  return simdjson::SUCCESS;
}

// Message content is a string or a list of parts; only {"type":"text","text":...} parts count.
// Every message counts towards `words`; only the last "user" message towards `last_user_tok_words`,
// since that is where a recomputing proxy appends the generated text.
simdjson::error_code count_messages(od::value messages, std::int64_t& words,
                                    std::int64_t& last_user_tok_words) {
  od::array list;
  if (messages.get_array().get(list)) return simdjson::SUCCESS;
  for (auto message_result : list) {
    od::object message;
    if (message_result.get_object().get(message)) continue;
    word_count content;
    bool user = false;  // "role" may come before or after "content"
    for (auto field_result : message) {
      od::field field;
      if (auto ec = std::move(field_result).get(field)) return ec;
      std::string_view key;
      if (auto ec = field.unescaped_key().get(key)) return ec;
      if (key == "role") {
        std::string_view role;
        user = field.value().get_string().get(role) == simdjson::SUCCESS && role == "user";
        continue;
      }
      if (key != "content") continue;
      od::json_type type;
      if (auto ec = field.value().type().get(type)) return ec;
      if (type == od::json_type::string) {
        std::string_view s;
        if (auto ec = field.value().get_string().get(s)) return ec;
        content.add(s);
      } else if (type == od::json_type::array) {
        od::array parts;
        if (auto ec = field.value().get_array().get(parts)) return ec;
        for (auto part : parts) {
          std::string_view text;
          if (part["text"].get_string().get(text) == simdjson::SUCCESS) content.add(text);
        }
      }
    }
    words += content.words;
    if (user) last_user_tok_words = content.tok_words;
  }
  return simdjson::SUCCESS;
}

// A bool member of another type counts as false, like an absent one.
bool read_bool(od::value v) {
  bool b = false;
  return v.get_bool().get(b) == simdjson::SUCCESS && b;
}

simdjson::error_code read_kv_params(od::value v, completion_request& out) {
  od::object kv;
  if (v.get_object().get(kv)) return simdjson::SUCCESS;  // null or another type: no PD role
  bool remote_decode = false;
  bool remote_prefill = false;
  for (auto field_result : kv) {
    od::field field;
    if (auto ec = std::move(field_result).get(field)) return ec;
    std::string_view key;
    if (auto ec = field.unescaped_key().get(key)) return ec;
    if (key == "do_remote_decode") remote_decode = read_bool(field.value());
    if (key == "do_remote_prefill") remote_prefill = read_bool(field.value());
  }
  if (remote_decode) {
    out.role = request_role::prefill;
  } else if (remote_prefill) {
    out.role = request_role::decode;
  }
  return simdjson::SUCCESS;
}

}  // namespace

std::optional<completion_request> completion_request::parse(std::string_view body, bool chat,
                                                            std::string& error) {
  // One parser per thread: it keeps its buffers between requests.
  thread_local od::parser parser;
  const simdjson::padded_string padded(body);
  completion_request out;
  out.chat = chat;
  std::optional<std::int64_t> max_tokens;
  std::optional<std::int64_t> max_completion_tokens;
  word_count prompt_words;  // completions
  std::int64_t chat_words = 0;
  std::int64_t chat_tok_words = 0;

  od::document doc;
  od::object object;
  if (parser.iterate(padded).get(doc) || doc.get_object().get(object)) {
    error = "The request body is not valid JSON or not a JSON object";
    return std::nullopt;
  }
  auto read_limit = [&](od::value v, std::optional<std::int64_t>& limit) {
    std::int64_t n = 0;
    if (v.get_int64().get(n) == simdjson::SUCCESS) limit = n;
  };
  for (auto field_result : object) {
    od::field field;
    std::string_view key;
    if (std::move(field_result).get(field) || field.unescaped_key().get(key)) {
      error = "Invalid JSON in the request body";
      return std::nullopt;
    }
    simdjson::error_code ec = simdjson::SUCCESS;
    if (key == "kv_transfer_params") {
      ec = read_kv_params(field.value(), out);
    } else if (key == "stream") {
      out.stream = read_bool(field.value());
    } else if (key == "stream_options") {
      od::object options;
      if (field.value().get_object().get(options) == simdjson::SUCCESS) {
        for (auto option_result : options) {
          od::field option;
          std::string_view option_key;
          if ((ec = std::move(option_result).get(option)) ||
              (ec = option.unescaped_key().get(option_key))) {
            break;
          }
          if (option_key == "include_usage") out.include_usage = read_bool(option.value());
        }
      }
    } else if (key == "max_tokens") {
      read_limit(field.value(), max_tokens);
    } else if (key == "max_completion_tokens") {
      read_limit(field.value(), max_completion_tokens);
    } else if (key == "prompt" && !chat) {
      ec = count_prompt(field.value(), prompt_words);
    } else if (key == "messages" && chat) {
      ec = count_messages(field.value(), chat_words, chat_tok_words);
    } else if (key == "mock_fault") {
      std::string_view fault;
      if (field.value().get_string().get(fault) == simdjson::SUCCESS) out.fault = fault;
    }
    if (ec) {
      error = std::string("Invalid JSON in the request body: ") + simdjson::error_message(ec);
      return std::nullopt;
    }
  }

  if (chat && max_completion_tokens) max_tokens = max_completion_tokens;
  if (max_tokens) out.max_tokens = *max_tokens;
  if (out.max_tokens < 0 || out.max_tokens > max_generated_tokens) {
    error = "max_tokens must be between 0 and " + std::to_string(max_generated_tokens) + ", got " +
            std::to_string(out.max_tokens);
    return std::nullopt;
  }
  const std::int64_t words = chat ? chat_words : prompt_words.words;
  out.prompt_tokens = words < 1 ? 1 : words;
  out.tok_words = chat ? chat_tok_words : prompt_words.tok_words;
  return out;
}

}  // namespace glm::mock
