// glm-proxy: parse the command line, set up logging, serve. Everything else lives in glm_proxy_lib.
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include "proxy/command_line.hpp"
#include "proxy/logging.hpp"
#include "proxy/server.hpp"

namespace {

// Each stream holds a client socket and an upstream socket: raise the soft descriptor limit to
// the hard one so thousands of streams fit.
void raise_file_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

}  // namespace

int main(int argc, char** argv) {
  glm::proxy::config cfg;
  if (auto exit_code = glm::proxy::parse_command_line(argc, argv, cfg)) return *exit_code;

  glm::proxy::setup_logging(cfg.log_level, cfg.log_format);
  raise_file_limit();

  glm::proxy::log_always("configuration: " + glm::proxy::effective_configuration(cfg));

  // SIGHUP reads the same sources again; argv lives as long as the process.
  glm::proxy::config_reload::reader reread;
  if (!cfg.config_file.empty()) {
    reread = [argc, argv](glm::proxy::config& out) {
      return glm::proxy::reread_configuration(argc, argv, out);
    };
  }
  glm::proxy::server srv(cfg, std::move(reread));
  if (auto ec = srv.listen()) {
    spdlog::critical("cannot listen on {}:{}: {}", cfg.host, cfg.port, ec.message());
    return 1;
  }
  return srv.run();
}
