#include "proxy/command_line.hpp"

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#include <sstream>

namespace glm::proxy {
namespace {

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

}  // namespace

std::optional<int> parse_command_line(int argc, char** argv, config& out) {
  CLI::App app{
      "glm-proxy: a prefill/decode disaggregation proxy for vLLM.\n"
      "Each OpenAI completion request is prefilled on the least-loaded prefiller (max_tokens 1, "
      "kv_transfer_params do_remote_decode), then decoded on the least-loaded decoder with the "
      "prefiller's kv_transfer_params; the decoder's answer is streamed back.",
      "glm-proxy"};
  app.option_defaults()->always_capture_default();

  std::vector<std::string> prefiller_hosts{"localhost"};
  std::vector<std::uint16_t> prefiller_ports{8001};
  std::vector<std::string> decoder_hosts{"localhost"};
  std::vector<std::uint16_t> decoder_ports{8002};

  app.add_option("--host", out.host, "Address to listen on");
  app.add_option("--port", out.port, "Port to listen on (0 picks a free one)");
  app.add_option("--prefiller-hosts", prefiller_hosts, "Prefiller hosts, paired with ports");
  app.add_option("--prefiller-ports", prefiller_ports, "Prefiller ports, paired with hosts");
  app.add_option("--decoder-hosts", decoder_hosts, "Decoder hosts, paired with ports");
  app.add_option("--decoder-ports", decoder_ports, "Decoder ports, paired with hosts");
  app.add_option("--max-retries", out.max_retries,
                 "Attempts per backend request are max(1, this); HTTP 400 is never retried");
  app.add_option("--retry-delay", out.retry_delay,
                 "Seconds before retry k, doubled each time: delay * 2^(k-1)");
  app.add_option("--max-waiting-retries", out.max_waiting_retries,
                 "Failed probes before an instance added by /instances/add is dropped");
  app.add_option("--waiting-retry-interval", out.waiting_retry_interval,
                 "Seconds between probes of instances waiting to be added");
  app.add_option("--workers", out.workers, "Event-loop threads sharing one balancer")
      ->check(CLI::Range(1, 256));
  app.add_option("--log-level", out.log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL")
      ->transform(
          CLI::IsMember({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}, CLI::ignore_case));
  app.add_option("--connect-timeout", out.connect_timeout, "Seconds per upstream connect")
      ->check(CLI::PositiveNumber);
  app.add_option("--prefill-timeout", out.prefill_timeout, "Seconds for the whole prefill answer")
      ->check(CLI::PositiveNumber);
  app.add_option("--stream-idle-timeout", out.stream_idle_timeout,
                 "Largest gap in seconds between two reads of a decoder's answer")
      ->check(CLI::PositiveNumber);
  app.add_option("--client-write-timeout", out.client_write_timeout,
                 "Seconds one write to a client may take")
      ->check(CLI::PositiveNumber);
  app.add_option("--header-timeout", out.header_timeout,
                 "Seconds a client has to send a request's headers")
      ->check(CLI::PositiveNumber);
  app.add_option("--drain-timeout", out.drain_timeout,
                 "Seconds requests in flight get to finish after SIGTERM or SIGINT")
      ->check(CLI::NonNegativeNumber);
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
      ->check(CLI::PositiveNumber);
  app.add_option("--log-format", out.log_format, "text, or json (one object per line)")
      ->transform(CLI::IsMember({"text", "json"}, CLI::ignore_case));
  app.add_option("--max-connections", out.max_connections,
                 "Client connections open at once; over it, new ones get a 503 (0: no limit)");
  app.add_option("--max-inflight", out.max_inflight,
                 "Completion requests in flight; over it, 503 with Retry-After (0: no limit)");
  app.add_option("--queue-timeout", out.queue_timeout,
                 "Seconds a request over --max-inflight may wait for a slot before its 503")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--eject-after", out.eject_after,
                 "Consecutive failures that take an instance out of rotation (0: never)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--eject-seconds", out.eject_seconds,
                 "First ejection's length in seconds; it doubles with each further ejection")
      ->check(CLI::PositiveNumber);
  app.add_option("--api-key", out.api_key,
                 "Bearer token clients must send to the completion endpoints (also "
                 "GLM_PROXY_API_KEY)");
  app.add_option("--admin-token", out.admin_token,
                 "Bearer token for /instances/* and /reset_prefix_cache; without it they answer "
                 "loopback clients only");

  // A misspelled key in the file is an error, not a setting silently left at its default.
  app.allow_config_extras(CLI::config_extras_mode::error);
  app.set_config("--config", "",
                 "Read options from a TOML file: keys named like the flags (port = 8000, "
                 "prefiller-hosts = [\"10.0.0.1\"]); the command line wins");
  // Every flag can also come from the environment as GLM_PROXY_<FLAG> (lists comma-separated);
  // the command line and then the config file win over it.
  for (CLI::Option* opt : app.get_options()) {
    std::string name = opt->get_single_name();
    if (name == "help" || name == "config" || name.empty()) continue;
    std::string env = "GLM_PROXY_";
    for (char c : name) env += c == '-' ? '_' : static_cast<char>(::toupper(c));
    opt->envname(env);
    if (opt->get_items_expected_max() > 1) opt->delimiter(',');
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
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
      std::cerr << "glm-proxy: error: " << *err << "\n";
      return 2;
    }
  }
  if (const char* key = std::getenv("OPENAI_API_KEY"); key != nullptr && *key != '\0') {
    out.backend_api_key = key;
  }
  return std::nullopt;
}

}  // namespace glm::proxy

namespace glm::proxy {

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
    << " api_key=" << (c.api_key.empty() ? "unset" : "set")
    << " admin_token=" << (c.admin_token.empty() ? "unset" : "set")
    << " backend_api_key=" << (c.backend_api_key.empty() ? "unset" : "set");
  return s.str();
}

}  // namespace glm::proxy
