// glm-loadgen: a closed-loop load generator for streaming /v1/completions, a holder of many
// concurrent streams, and a multi-turn chat workload, for glm-proxy's benchmarks
// (bench/run_bench.sh, bench/run_routing.sh). See bench/README.md.
#include <sys/resource.h>

#include <charconv>
#include <csignal>
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>

#include "bench/loadgen/conversation_run.hpp"
#include "bench/loadgen/load_run.hpp"
#include "bench/loadgen/loadgen_config.hpp"
#include "bench/loadgen/run_report.hpp"

namespace {

// Hold mode keeps one descriptor per stream: ask for the hard limit.
void raise_fd_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == limit.rlim_max) return;
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) std::perror("glm-loadgen: setrlimit(RLIMIT_NOFILE)");
}

bool parse_target(const std::string& text, glm::loadgen::target& out) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  out.host = text.substr(0, colon);
  if (out.host.size() > 2 && out.host.front() == '[' && out.host.back() == ']') {
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  const char* first = text.data() + colon + 1;
  const char* last = text.data() + text.size();
  auto [end, ec] = std::from_chars(first, last, out.port);
  return ec == std::errc{} && end == last && out.port != 0;
}

}  // namespace

int main(int argc, char** argv) {
  glm::loadgen::loadgen_config config;
  std::vector<std::string> targets;
  bool no_check_order = false;

  CLI::App app{"glm-loadgen: streaming completions load generator for glm-proxy's benchmark"};
  // The last of a repeated flag wins, so a script can override its own defaults.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--target", targets, "host:port to send to (IP literal); repeat to spread clients")
      ->required()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--path", config.path, "request path")->capture_default_str();
  app.add_option("--model", config.model, "model in the body")->capture_default_str();
  app.add_option("--clients,-c", config.clients, "concurrent streams (closed loop)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--requests,-n", config.requests, "total requests, 0 for --duration only")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--duration,-d", config.duration_s,
                 "seconds after which no request starts (0: none; then --requests bounds the run)")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_option("--max-tokens,-t", config.max_tokens, "T: tokens asked for and expected")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--prompt-words", config.prompt_words, "prompt length in words")
      ->check(CLI::Range(0, 10000000))
      ->capture_default_str();
  app.add_option("--prompt-bytes", config.prompt_bytes,
                 "prompt length in bytes (overrides --prompt-words)")
      ->check(CLI::Range(0, 64 << 20));
  app.add_option("--extra-json", config.extra_json,
                 "raw JSON members appended to the body, e.g. '\"mock_fault\":\"recompute\"'");
  app.add_flag("--no-check-order", no_check_order, "accept any token text (not the mock's)");
  app.add_option("--timeout", config.request_timeout_s, "seconds a whole request may take")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  app.add_option("--threads", config.threads, "io_context threads")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--hold", config.hold,
                 "hold mode: open this many streams at once, one request each, and report how "
                 "many completed")
      ->check(CLI::Range(0, 100000));
  app.add_option("--ramp", config.ramp_s, "hold mode: seconds over which the connects are spread")
      ->check(CLI::Range(0.0, 600.0))
      ->capture_default_str();
  app.add_option("--conversations", config.conversations,
                 "multi-turn chat workload: this many conversations (K), --clients at once")
      ->check(CLI::Range(0, 10'000'000));
  app.add_option("--turns", config.turns, "turns per conversation (T)")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  app.add_option("--turn-bytes", config.turn_bytes, "bytes of new user text per turn")
      ->check(CLI::Range(0, 64 << 20))
      ->capture_default_str();
  app.add_option("--groups", config.groups,
                 "groups of conversations, each sharing one system prompt (G)")
      ->check(CLI::Range(1, 10'000'000))
      ->capture_default_str();
  app.add_option("--system-bytes", config.system_bytes, "bytes of each group's system prompt (S)")
      ->check(CLI::Range(0, 64 << 20))
      ->capture_default_str();
  app.add_flag("--session-header", config.session_header,
               "send X-Session-Id: conv-<k> with every turn of conversation k");
  app.add_option("--seed", config.seed, "seed of the conversations' text")->capture_default_str();
  app.add_option("--label", config.label, "name copied into the RESULT line");
  app.add_flag("--json-only", config.json_only, "print only the RESULT line");
  CLI11_PARSE(app, argc, argv);

  config.check_order = !no_check_order;
  if (config.conversation_mode()) {
    if (config.hold_mode()) {
      std::cerr << "glm-loadgen: --conversations and --hold exclude each other\n";
      return 2;
    }
    if (app.count("--path") == 0) config.path = "/v1/chat/completions";
  } else if (config.requests == 0 && config.duration_s <= 0 && !config.hold_mode()) {
    std::cerr << "glm-loadgen: give --requests or --duration, so the run ends\n";
    return 2;
  }
  for (const std::string& t : targets) {
    glm::loadgen::target parsed;
    if (!parse_target(t, parsed)) {
      std::cerr << "glm-loadgen: bad --target '" << t << "', want IP:PORT\n";
      return 2;
    }
    config.targets.push_back(parsed);
  }
  raise_fd_limit();
  std::signal(SIGPIPE, SIG_IGN);

  glm::loadgen::run_result result = config.conversation_mode()
                                        ? glm::loadgen::conversation_run(config).run()
                                        : glm::loadgen::load_run(config).run();
  glm::loadgen::run_report report(config, result);
  if (!config.json_only) report.print_table(std::cout);
  report.print_json(std::cout);
  return 0;
}
