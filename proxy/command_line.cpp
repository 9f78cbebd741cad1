#include "proxy/command_line.hpp"

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

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
  app.add_option("--max-body-bytes", out.max_body_bytes, "Largest request body; over it, 413")
      ->check(CLI::PositiveNumber);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

  std::transform(out.log_level.begin(), out.log_level.end(), out.log_level.begin(), ::toupper);
  for (auto err : {zip_addresses("prefiller", prefiller_hosts, prefiller_ports, out.prefillers),
                   zip_addresses("decoder", decoder_hosts, decoder_ports, out.decoders)}) {
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
