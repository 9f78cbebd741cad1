#include "proxy/command_line.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>

#include "proxy/config_file_reader.hpp"
#include "proxy/flag_checks.hpp"

namespace glm::proxy {
namespace {

using flag_checks::bearer_token;
using flag_checks::is_wildcard;
using flag_checks::metaserver_url;
using flag_checks::not_empty;
using flag_checks::number_in;

// Zips the reference's paired --*-hosts / --*-ports lists into addresses.
std::optional<std::string> zip_addresses(const char* what, const std::vector<std::string>& hosts,
                                         const std::vector<std::uint16_t>& ports,
                                         std::vector<balancer::backend_address>& out) {
  if (hosts.size() != ports.size()) {
    return std::string("--") + what + "-hosts has " + std::to_string(hosts.size()) +
           " entries but --" + what + "-ports has " + std::to_string(ports.size()) +
           "; the lists are paired and must have the same length";
  }
  out.clear();
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    std::string host = hosts[i];
    // Accept "[::1]" as well as "::1": the brackets belong to URLs, not to addresses.
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    out.push_back({host, ports[i]});
  }
  return std::nullopt;
}

// Parses --prefill / --decode entries ("host:port", "[v6]:port") and appends them to `out`.
std::optional<std::string> parse_addresses(const char* flag, const std::vector<std::string>& texts,
                                           std::vector<balancer::backend_address>& out) {
  for (const auto& text : texts) {
    auto addr = balancer::backend_address::parse(text);
    if (!addr) {
      return std::string(flag) + ": '" + text + "' is not HOST:PORT (IPv6 as [ADDR]:PORT)";
    }
    out.push_back(*addr);
  }
  return std::nullopt;
}

constexpr double max_seconds = 1e6;  // about 11 days: far beyond any sane timeout, no overflow

std::string env_name(const std::string& flag) {
  std::string env = "GLM_PROXY_";
  for (char c : flag) env += c == '-' ? '_' : static_cast<char>(::toupper(c));
  return env;
}

bool on_command_line(int argc, char** argv, const std::string& flag) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a(argv[i]);
    if (a == "--") break;
    if (a == flag ||
        (a.size() > flag.size() && a.substr(0, flag.size()) == flag && a[flag.size()] == '=')) {
      return true;
    }
  }
  return false;
}

// A usage error's message, saying where a bad value came from when it was not the command line:
// "FILE:LINE: ..." for the config file, "... (from GLM_PROXY_X)" for the environment. CLI11's
// conversion and validation errors start with the flag ("--port: ..."); the config reader's with
// "line N: ".
std::string locate(const CLI::App& app, const config_file_reader& reader, int argc, char** argv,
                   const std::string& message) {
  std::string file;
  if (const CLI::Option* opt = app.get_config_ptr(); opt != nullptr && opt->count() > 0) {
    file = opt->as<std::string>();
  }
  if (message.rfind("line ", 0) == 0) {
    auto colon = message.find(':');
    return file + ":" + message.substr(5, colon - 5) + message.substr(colon);
  }
  if (message.rfind("--", 0) != 0) return message;
  std::string flag = message.substr(0, message.find_first_of(": "));
  if (on_command_line(argc, argv, flag)) return message;
  if (int line = reader.line_of(flag.substr(2)); line > 0 && !file.empty()) {
    return file + ":" + std::to_string(line) + ": " + message;
  }
  std::string env = env_name(flag.substr(2));
  if (std::getenv(env.c_str()) != nullptr) return message + " (from " + env + ")";
  return message;
}

// The --config reader's view of the flags: which take a list, and what kind of value.
std::map<std::string, config_file_reader::key_info, std::less<>> file_keys(const CLI::App& app) {
  std::map<std::string, config_file_reader::key_info, std::less<>> keys;
  for (const CLI::Option* opt : app.get_options()) {
    std::string name = opt->get_single_name();
    if (name.empty() || name == "help" || name == "version" || name == "config") continue;
    config_file_reader::key_info info;
    std::string type = opt->get_type_name();
    if (opt->get_expected_min() == 0) {
      info.kind = config_file_reader::value_kind::boolean;
    } else if (type.rfind("INT", 0) == 0 || type.rfind("UINT", 0) == 0 ||
               type.rfind("FLOAT", 0) == 0 || type.rfind("NUMBER", 0) == 0) {
      info.kind = config_file_reader::value_kind::number;
    }
    info.list = opt->get_items_expected_max() > 1;
    keys.emplace(name, info);
  }
  return keys;
}

std::optional<int> parse(int argc, char** argv, config& out, std::ostream& info,
                         std::ostream& errors) {
  out = config{};
  CLI::App app{
      "glm-proxy: a prefill/decode disaggregation proxy for vLLM.\n"
      "Each OpenAI completion request is prefilled on the least-loaded prefiller (max_tokens 1, "
      "kv_transfer_params do_remote_decode), then decoded on the least-loaded decoder with the "
      "prefiller's kv_transfer_params; the decoder's answer is streamed back.",
      "glm-proxy"};
  app.option_defaults()->always_capture_default();
  app.set_version_flag("--version", std::string("glm-proxy ") + GLM_PROXY_VERSION,
                       "Print the version and exit");

  std::vector<std::string> prefiller_hosts{"localhost"};
  std::vector<std::uint16_t> prefiller_ports{8001};
  std::vector<std::string> decoder_hosts{"localhost"};
  std::vector<std::uint16_t> decoder_ports{8002};

  app.add_option("--host", out.host, "Address to listen on")->check(not_empty());
  app.add_option("--port", out.port, "Port to listen on (0 picks a free one)")
      ->check(number_in(0, 65535));
  app.add_option("--prefiller-hosts", prefiller_hosts, "Prefiller hosts, paired with ports")
      ->check(not_empty());
  app.add_option("--prefiller-ports", prefiller_ports, "Prefiller ports, paired with hosts")
      ->check(number_in(1, 65535));
  app.add_option("--decoder-hosts", decoder_hosts, "Decoder hosts, paired with ports")
      ->check(not_empty());
  app.add_option("--decoder-ports", decoder_ports, "Decoder ports, paired with hosts")
      ->check(number_in(1, 65535));
  app.add_option("--max-retries", out.max_retries,
                 "Attempts per backend request are max(1, this); HTTP 400 is never retried")
      ->check(number_in(0, 100));
  app.add_option("--retry-delay", out.retry_delay,
                 "Seconds before retry k, doubled each time: delay * 2^(k-1)")
      ->check(number_in(0, 3600));
  app.add_option("--max-waiting-retries", out.max_waiting_retries,
                 "Failed probes before an instance added by /instances/add is dropped")
      ->check(number_in(1, 1e6));
  app.add_option("--waiting-retry-interval", out.waiting_retry_interval,
                 "Seconds between probes of instances waiting to be added")
      ->check(number_in(0, 86400, true));
  app.add_option("--workers", out.workers, "Event-loop threads sharing one balancer")
      ->check(number_in(1, 256));
  app.add_option("--log-level", out.log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL")
      ->transform(
          CLI::IsMember({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}, CLI::ignore_case));
  app.add_option("--connect-timeout", out.connect_timeout, "Seconds per upstream connect")
      ->check(number_in(0, max_seconds, true));
  app.add_option("--prefill-timeout", out.prefill_timeout, "Seconds for the whole prefill answer")
      ->check(number_in(0, max_seconds, true));
  app.add_option("--stream-idle-timeout", out.stream_idle_timeout,
                 "Largest gap in seconds between two reads of a decoder's answer")
      ->check(number_in(0, max_seconds, true));
  app.add_option("--client-write-timeout", out.client_write_timeout,
                 "Seconds one write to a client may take")
      ->check(number_in(0, max_seconds, true));
  app.add_option("--header-timeout", out.header_timeout,
                 "Seconds a client has to send a request's headers")
      ->check(number_in(0, max_seconds, true));
  app.add_option("--drain-timeout", out.drain_timeout,
                 "Seconds requests in flight get to finish after SIGTERM or SIGINT")
      ->check(number_in(0, max_seconds));
  std::vector<std::string> prefill_list, decode_list;
  app.add_option("--prefill", prefill_list,
                 "Prefill instances as HOST:PORT ([ADDR]:PORT for IPv6), instead of or besides "
                 "the paired lists")
      ->delimiter(',');
  app.add_option("--decode", decode_list,
                 "Decode instances as HOST:PORT ([ADDR]:PORT for IPv6), instead of or besides "
                 "the paired lists")
      ->delimiter(',');
  app.add_option("--max-body-bytes", out.max_body_bytes, "Largest request body; over it, 413")
      ->check(number_in(1, 1e12));
  app.add_option("--log-format", out.log_format, "text, or json (one object per line)")
      ->transform(CLI::IsMember({"text", "json"}, CLI::ignore_case));
  app.add_option("--max-connections", out.max_connections,
                 "Client connections open at once; over it, new ones get a 503 (0: no limit)")
      ->check(number_in(0, 1e7));
  app.add_option("--max-inflight", out.max_inflight,
                 "Completion requests in flight; over it, 503 with Retry-After (0: no limit)")
      ->check(number_in(0, 1e7));
  app.add_option("--queue-timeout", out.queue_timeout,
                 "Seconds a request over --max-inflight may wait for a slot before its 503")
      ->check(number_in(0, max_seconds));
  app.add_option("--eject-after", out.eject_after,
                 "Consecutive failures that take an instance out of rotation (0: never)")
      ->check(number_in(0, 1e6));
  app.add_option("--eject-seconds", out.eject_seconds,
                 "First ejection's length in seconds; it doubles with each further ejection")
      ->check(number_in(0, max_seconds, true));
  std::string prefill_policy = "least_loaded", decode_policy = "least_loaded";
  const std::vector<std::string> policies{"least_loaded", "round_robin", "consistent_hash",
                                          "cache_aware"};
  app.add_option("--prefill-policy", prefill_policy,
                 "How a prefiller is chosen: least_loaded, round_robin, consistent_hash or "
                 "cache_aware")
      ->transform(CLI::IsMember(policies));
  app.add_option("--decode-policy", decode_policy,
                 "How a decoder is chosen: least_loaded, round_robin, consistent_hash or "
                 "cache_aware")
      ->transform(CLI::IsMember(policies));
  auto& r = out.routing;
  app.add_option("--cache-threshold", r.cache_threshold,
                 "cache_aware: share of the prompt a predicted prefix match must cover to count")
      ->check(number_in(0, 1));
  app.add_option("--cache-balance-abs-threshold", r.cache_balance_abs_threshold,
                 "cache_aware: affinity yields when a candidate has this many requests more than "
                 "the mean (and --cache-balance-rel-threshold times it)")
      ->check(number_in(0, 1e6));
  app.add_option("--cache-balance-rel-threshold", r.cache_balance_rel_threshold,
                 "cache_aware: affinity yields when a candidate has this many times the mean "
                 "(and --cache-balance-abs-threshold more)")
      ->check(number_in(1, 1e6));
  app.add_option("--cache-max-entries", r.cache_max_entries,
                 "cache_aware: prefix blocks remembered per instance (LRU)")
      ->check(number_in(1, 1e8));
  app.add_option("--hash-balance-factor", r.hash_balance_factor,
                 "consistent_hash: a key's instance takes it while its load is under "
                 "ceil((1 + this) * mean)")
      ->check(number_in(0, 100));
  app.add_option("--max-prefill-answer-bytes", out.max_prefill_answer_bytes,
                 "Largest prefill answer buffered; past it the attempt fails with 502 and is "
                 "retried elsewhere")
      ->check(number_in(1024, 1e12));
  app.add_option("--scrape-interval", out.scrape_interval,
                 "Seconds between reads of every backend's /metrics, whose queue and KV usage then "
                 "count in routing (0: off)")
      ->check(number_in(0, 3600));
  app.add_option("--kv-high", out.kv_high,
                 "KV cache usage from which an instance gets no new requests while another is "
                 "below (needs --scrape-interval)")
      ->check(number_in(0, 1, true));
  app.add_option("--max-metrics-bytes", out.max_metrics_bytes,
                 "Largest /metrics body read from a backend; past it the scrape fails")
      ->check(number_in(1024, 1e12));
  std::string prefill_fallback = "off";
  app.add_option("--prefill-fallback", prefill_fallback,
                 "off, or decode: when no prefiller can serve, the decoder prefills the request "
                 "itself")
      ->transform(CLI::IsMember({"off", "decode"}));
  app.add_option("--api-key", out.api_key,
                 "Bearer token clients must send to the completion endpoints (also "
                 "GLM_PROXY_API_KEY)")
      ->check(bearer_token());
  app.add_option("--admin-token", out.admin_token,
                 "Bearer token for /instances/* and /reset_prefix_cache; without it they answer "
                 "loopback clients only")
      ->check(bearer_token());
  std::string mode = "standard";
  app.add_option("--pd-mode", mode,
                 "standard: prefill, then decode; layerwise: vllm-ascend's layerwise mode (decode "
                 "first; the decoder calls --metaserver-url back, then the prefill is sent)")
      ->transform(CLI::IsMember({"standard", "layerwise"}));
  app.add_option("--metaserver-url", out.metaserver_url,
                 "Layerwise mode: the URL decoders call back (default "
                 "http://<--host>:<--port>/v1/metaserver, with the bound port)")
      ->check(metaserver_url());
  app.add_option("--metaserver-timeout", out.metaserver_timeout,
                 "Layerwise mode: seconds the decoder has to call back before the request is "
                 "ended (0: --prefill-timeout)")
      ->check(number_in(0, max_seconds));
  app.add_flag("--reuse-port", out.reuse_port,
               "Set SO_REUSEPORT and take the port's new connections from an older glm-proxy "
               "on it, which can then drain: an upgrade without refused connections");

  app.set_config("--config", "",
                 "Read options from a TOML file: keys named like the flags (port = 8000, "
                 "prefiller-hosts = [\"10.0.0.1\"]); the command line wins. SIGHUP re-reads it");
  // Every flag can also come from the environment as GLM_PROXY_<FLAG> (lists comma-separated);
  // the command line and then the config file win over it.
  for (CLI::Option* opt : app.get_options()) {
    std::string name = opt->get_single_name();
    if (name == "help" || name == "version" || name == "config" || name.empty()) continue;
    opt->envname(env_name(name));
    if (opt->get_items_expected_max() > 1) opt->delimiter(',');
  }
  // Made after every option exists: it learns their names and kinds from the app.
  auto reader = std::make_shared<config_file_reader>(file_keys(app));
  app.config_formatter(reader);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e, info, errors);
    errors << "glm-proxy: error: " << locate(app, *reader, argc, argv, e.what()) << "\n"
           << "Run with --help for more information.\n";
    return 2;
  }
  if (const CLI::Option* opt = app.get_config_ptr(); opt->count() > 0) {
    out.config_file = opt->as<std::string>();
  }

  std::transform(out.log_level.begin(), out.log_level.end(), out.log_level.begin(), ::toupper);
  std::transform(out.log_format.begin(), out.log_format.end(), out.log_format.begin(), ::tolower);
  // --prefill/--decode alone replace the paired lists' defaults; given with them, they add to them.
  if (!prefill_list.empty() && app.count("--prefiller-hosts") == 0 &&
      app.count("--prefiller-ports") == 0) {
    prefiller_hosts.clear();
    prefiller_ports.clear();
  }
  if (!decode_list.empty() && app.count("--decoder-hosts") == 0 &&
      app.count("--decoder-ports") == 0) {
    decoder_hosts.clear();
    decoder_ports.clear();
  }
  for (auto err : {zip_addresses("prefiller", prefiller_hosts, prefiller_ports, out.prefillers),
                   zip_addresses("decoder", decoder_hosts, decoder_ports, out.decoders),
                   parse_addresses("--prefill", prefill_list, out.prefillers),
                   parse_addresses("--decode", decode_list, out.decoders)}) {
    if (err) {
      errors << "glm-proxy: error: " << *err << "\n";
      return 2;
    }
  }
  out.fallback = prefill_fallback == "decode" ? config::prefill_fallback::decode
                                              : config::prefill_fallback::off;
  out.routing.prefill_policy = *balancer::parse_route_policy(prefill_policy);
  out.routing.decode_policy = *balancer::parse_route_policy(decode_policy);
  if (auto err = balancer::validate(out.routing)) {
    errors << "glm-proxy: error: " << *err << "\n";
    return 2;
  }
  out.mode = mode == "layerwise" ? pd_mode::layerwise : pd_mode::standard;
  if (out.metaserver_timeout == 0) out.metaserver_timeout = out.prefill_timeout;
  if (out.mode == pd_mode::layerwise && out.metaserver_url.empty() && is_wildcard(out.host)) {
    errors << "glm-proxy: error: --pd-mode layerwise with --host " << out.host
           << " needs --metaserver-url: decoders call the metaserver back at that URL, and "
              "cannot call a wildcard address; give the address they reach this proxy at\n";
    return 2;
  }
  if (const char* key = std::getenv("OPENAI_API_KEY"); key != nullptr && *key != '\0') {
    out.backend_api_key = key;
  }
  return std::nullopt;
}

}  // namespace

std::optional<int> parse_command_line(int argc, char** argv, config& out) {
  return parse(argc, argv, out, std::cout, std::cerr);
}

std::optional<std::string> reread_configuration(int argc, char** argv, config& out) {
  std::ostringstream info, errors;
  auto code = parse(argc, argv, out, info, errors);
  if (!code) return std::nullopt;
  std::string message = errors.str();
  // Only the first line: the second is the "--help" hint, which means nothing in a log.
  message = message.substr(0, message.find('\n'));
  if (message.rfind("glm-proxy: error: ", 0) == 0) message.erase(0, 18);
  return message.empty() ? std::string("the command line asks for help or the version") : message;
}

std::string effective_configuration(const config& c) {
  auto list = [](const std::vector<balancer::backend_address>& addrs) {
    std::string out;
    for (const auto& a : addrs) out += (out.empty() ? "" : " ") + a.to_string();
    return out;
  };
  std::ostringstream s;
  s << "host=" << c.host << " port=" << c.port << " prefillers=[" << list(c.prefillers)
    << "] decoders=[" << list(c.decoders) << "] workers=" << c.workers
    << " max_retries=" << c.max_retries << " retry_delay=" << c.retry_delay
    << " max_waiting_retries=" << c.max_waiting_retries
    << " waiting_retry_interval=" << c.waiting_retry_interval << " log_level=" << c.log_level
    << " connect_timeout=" << c.connect_timeout << " prefill_timeout=" << c.prefill_timeout
    << " stream_idle_timeout=" << c.stream_idle_timeout
    << " client_write_timeout=" << c.client_write_timeout << " header_timeout=" << c.header_timeout
    << " drain_timeout=" << c.drain_timeout << " max_body_bytes=" << c.max_body_bytes
    << " log_format=" << c.log_format << " max_connections=" << c.max_connections
    << " max_inflight=" << c.max_inflight << " queue_timeout=" << c.queue_timeout
    << " eject_after=" << c.eject_after << " eject_seconds=" << c.eject_seconds
    << " prefill_policy=" << balancer::to_string(c.routing.prefill_policy)
    << " decode_policy=" << balancer::to_string(c.routing.decode_policy)
    << " cache_threshold=" << c.routing.cache_threshold
    << " cache_balance_abs_threshold=" << c.routing.cache_balance_abs_threshold
    << " cache_balance_rel_threshold=" << c.routing.cache_balance_rel_threshold
    << " cache_max_entries=" << c.routing.cache_max_entries
    << " hash_balance_factor=" << c.routing.hash_balance_factor
    << " max_prefill_answer_bytes=" << c.max_prefill_answer_bytes
    << " scrape_interval=" << c.scrape_interval << " kv_high=" << c.kv_high
    << " max_metrics_bytes=" << c.max_metrics_bytes
    << " prefill_fallback=" << (c.fallback == config::prefill_fallback::decode ? "decode" : "off")
    << " pd_mode=" << (c.mode == pd_mode::layerwise ? "layerwise" : "standard")
    << " metaserver_url=" << (c.metaserver_url.empty() ? "-" : c.metaserver_url)
    << " metaserver_timeout=" << c.metaserver_timeout
    << " reuse_port=" << (c.reuse_port ? "true" : "false")
    << " config=" << (c.config_file.empty() ? "-" : c.config_file)
    << " api_key=" << (c.api_key.empty() ? "unset" : "set")
    << " admin_token=" << (c.admin_token.empty() ? "unset" : "set")
    << " backend_api_key=" << (c.backend_api_key.empty() ? "unset" : "set");
  return s.str();
}

}  // namespace glm::proxy
