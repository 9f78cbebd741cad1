#include "bench/mock_vllm/completion_request.hpp"

#include <charconv>
#include <cmath>
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

// A prompt is a string, or a non-empty list of strings, of token ids, or of non-empty token-id
// lists (vLLM's types); anything else is INCORRECT_TYPE, a 400.
simdjson::error_code count_prompt(od::value prompt, word_count& words, std::int64_t& prompts) {
  od::json_type type;
  if (auto ec = prompt.type().get(type)) return ec;
  if (type == od::json_type::string) {
    std::string_view s;
    if (auto ec = prompt.get_string().get(s)) return ec;
    words.add(s);
    prompts = 1;
    return simdjson::SUCCESS;
  }
  if (type != od::json_type::array) return simdjson::INCORRECT_TYPE;
  od::array items;
  if (auto ec = prompt.get_array().get(items)) return ec;
  std::size_t n = 0;
  od::json_type first = od::json_type::null;
  for (auto item_result : items) {
    od::value item;
    if (auto ec = std::move(item_result).get(item)) return ec;
    if (auto ec = item.type().get(type)) return ec;
    if (n++ == 0) first = type;
    if (type != first) return simdjson::INCORRECT_TYPE;  // a list of one kind only
    if (type == od::json_type::string) {
      std::string_view s;
      if (auto ec = item.get_string().get(s)) return ec;
      words.add(s);
    } else if (type == od::json_type::array) {
      od::array ids;
      if (auto ec = item.get_array().get(ids)) return ec;
      std::int64_t m = 0;
      for (auto id_result : ids) {
        std::int64_t id = 0;
        if (id_result.get_int64().get(id) || id < 0) return simdjson::INCORRECT_TYPE;
        ++m;
      }
      if (m == 0) return simdjson::INCORRECT_TYPE;
      words.words += m;
    } else if (type == od::json_type::number) {
      std::int64_t id = 0;
      if (item.get_int64().get(id) || id < 0) return simdjson::INCORRECT_TYPE;
      ++words.words;  // a token id
    } else {
      return simdjson::INCORRECT_TYPE;
    }
  }
  // vLLM expands a list of strings or of token-id lists into one engine request per element.
  prompts = first == od::json_type::number ? 1 : static_cast<std::int64_t>(n);
  return n > 0 ? simdjson::SUCCESS : simdjson::INCORRECT_TYPE;
}

// Message content is a string or a list of parts; only {"type":"text","text":...} parts count.
// Every message counts towards `words`; only the last "user" message towards `last_user_tok_words`,
// since that is where a recomputing proxy appends the generated text. Messages must be a
// non-empty list of objects, each with a string "role" (INCORRECT_TYPE otherwise, a 400).
simdjson::error_code count_messages(od::value messages, std::int64_t& words,
                                    std::int64_t& last_user_tok_words) {
  od::array list;
  if (messages.get_array().get(list)) return simdjson::INCORRECT_TYPE;
  std::size_t n = 0;
  for (auto message_result : list) {
    od::object message;
    if (message_result.get_object().get(message)) return simdjson::INCORRECT_TYPE;
    ++n;
    word_count content;
    bool has_role = false;
    bool user = false;  // "role" may come before or after "content"
    for (auto field_result : message) {
      od::field field;
      if (auto ec = std::move(field_result).get(field)) return ec;
      std::string_view key;
      if (auto ec = field.unescaped_key().get(key)) return ec;
      if (key == "role") {
        std::string_view role;
        if (field.value().get_string().get(role)) return simdjson::INCORRECT_TYPE;
        has_role = true;
        user = role == "user";
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
      } else if (type != od::json_type::null) {
        return simdjson::INCORRECT_TYPE;
      }
    }
    if (!has_role) return simdjson::INCORRECT_TYPE;
    words += content.words;
    if (user) last_user_tok_words = content.tok_words;
  }
  return n > 0 ? simdjson::SUCCESS : simdjson::INCORRECT_TYPE;
}

// A bool member of another type counts as false, like an absent one.
bool read_bool(od::value v) {
  bool b = false;
  return v.get_bool().get(b) == simdjson::SUCCESS && b;
}

// vLLM validates a request with pydantic (lax mode) before anything else and answers 400 when a
// member has the wrong type. The mock checks the members it reads, the same way, so that a proxy
// passing a bad request through gets the backend's 400, as it would from vLLM.

// pydantic's lax bool: true/false, the integers 0 and 1, and a few strings ("yes", "off", ...).
// Null counts as absent. False (with `out` untouched) for anything else.
bool lax_bool(od::value v, bool& out) {
  od::json_type type;
  if (v.type().get(type)) return false;
  switch (type) {
    case od::json_type::null:
      return true;
    case od::json_type::boolean:
      return v.get_bool().get(out) == simdjson::SUCCESS;
    case od::json_type::number: {
      std::string_view raw = v.raw_json_token();
      raw = raw.substr(0, raw.find_last_not_of(" \t\r\n") + 1);
      if (raw != "0" && raw != "1") return false;
      out = raw == "1";
      return true;
    }
    case od::json_type::string: {
      std::string_view s;
      if (v.get_string().get(s)) return false;
      std::string lower;
      for (char c : s) lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
      for (std::string_view t : {"1", "on", "t", "true", "y", "yes"}) {
        if (lower == t) return out = true;
      }
      for (std::string_view f : {"0", "off", "f", "false", "n", "no"}) {
        if (lower == f) {
          out = false;
          return true;
        }
      }
      return false;
    }
    default:
      return false;
  }
}

// pydantic's lax int: an integer, a float with no fraction, or a string of digits; null counts as
// absent. False for anything else, including integers beyond int64.
bool lax_int(od::value v, std::optional<std::int64_t>& out) {
  od::json_type type;
  if (v.type().get(type)) return false;
  if (type == od::json_type::null) return true;
  std::string_view token;
  if (type == od::json_type::number) {
    token = v.raw_json_token();
  } else if (type == od::json_type::string) {
    if (v.get_string().get(token)) return false;
  } else {
    return false;
  }
  token = token.substr(0, token.find_last_not_of(" \t\r\n") + 1);
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), n);
  if (ec == std::errc() && end == token.data() + token.size()) {
    out = n;
    return true;
  }
  if (type != od::json_type::number) return false;
  double d = 0;
  if (v.get_double().get(d) || !std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9e15) {
    return false;
  }
  out = static_cast<std::int64_t>(d);
  return true;
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
    if (key == "metaserver") {
      std::string_view url;
      out.metaserver.clear();
      if (field.value().get_string().get(url) == simdjson::SUCCESS) out.metaserver = url;
    }
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
  bool has_prompt = false;
  // A member of the wrong type is a 400 naming it, like vLLM's pydantic validation error.
  auto invalid = [&](std::string_view key, std::string_view expected) {
    error = std::string(key) + ": Input should be " + std::string(expected);
    return std::nullopt;
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
    } else if (key == "model") {
      od::json_type type;
      if (field.value().type().get(type) ||
          (type != od::json_type::string && type != od::json_type::null)) {
        return invalid(key, "a valid string");
      }
    } else if (key == "stream") {
      if (!lax_bool(field.value(), out.stream)) return invalid(key, "a valid boolean");
    } else if (key == "stream_options") {
      od::json_type type;
      if (field.value().type().get(type)) return invalid(key, "a valid dictionary");
      if (type == od::json_type::object) {
        od::object options;
        if ((ec = field.value().get_object().get(options)))
          return invalid(key, "a valid dictionary");
        for (auto option_result : options) {
          od::field option;
          std::string_view option_key;
          if ((ec = std::move(option_result).get(option)) ||
              (ec = option.unescaped_key().get(option_key))) {
            break;
          }
          if (option_key == "include_usage" && !lax_bool(option.value(), out.include_usage)) {
            return invalid("stream_options.include_usage", "a valid boolean");
          }
        }
      } else if (type != od::json_type::null) {
        return invalid(key, "a valid dictionary");
      }
    } else if (key == "max_tokens") {
      if (!lax_int(field.value(), max_tokens)) return invalid(key, "a valid integer");
    } else if (key == "max_completion_tokens") {
      if (!lax_int(field.value(), max_completion_tokens)) return invalid(key, "a valid integer");
    } else if (key == "prompt" && !chat) {
      has_prompt = true;
      ec = count_prompt(field.value(), prompt_words, out.prompts);
      if (ec == simdjson::INCORRECT_TYPE) {
        return invalid(key, "a string, or a non-empty list of strings or token ids");
      }
    } else if (key == "messages" && chat) {
      has_prompt = true;
      ec = count_messages(field.value(), chat_words, chat_tok_words);
      if (ec == simdjson::INCORRECT_TYPE) {
        return invalid(key, "a non-empty list of messages with a string role");
      }
    } else if (key == "mock_fault") {
      std::string_view fault;
      if (field.value().get_string().get(fault) == simdjson::SUCCESS) out.fault = fault;
    }
    if (ec) {
      error = std::string("Invalid JSON in the request body: ") + simdjson::error_message(ec);
      return std::nullopt;
    }
  }
  if (!has_prompt) {
    error = chat ? "messages: Field required" : "prompt: Field required";
    return std::nullopt;
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
