#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <string_view>

#include "protocol/engine_metrics.hpp"

using glm::protocol::engine_metrics;
using glm::protocol::engine_metrics_error;
using glm::protocol::engine_metrics_status;

namespace {

// tests/unit/fixtures/, found from this file's own path so the test runs from any directory.
std::string read_fixture(const char* name) {
  auto path = std::filesystem::path(__FILE__).parent_path().parent_path() / "fixtures" / name;
  std::ifstream in(path, std::ios::binary);
  INFO(path.string());
  REQUIRE(in);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

engine_metrics parse_ok(std::string_view body) {
  engine_metrics m;
  engine_metrics_status st = engine_metrics::parse(body, m);
  INFO(body);
  INFO(to_string(st.error) << " at " << st.offset);
  REQUIRE(st.ok());
  return m;
}

engine_metrics_status parse_status(std::string_view body) {
  engine_metrics m;
  return engine_metrics::parse(body, m);
}

// The three families every sample needs, for one engine, before the line under test.
const std::string minimal =
    "vllm:num_requests_running{model_name=\"m\",engine=\"0\"} 2.0\n"
    "vllm:num_requests_waiting{model_name=\"m\",engine=\"0\"} 1.0\n"
    "vllm:kv_cache_usage_perc{model_name=\"m\",engine=\"0\"} 0.25\n";

}  // namespace

TEST_CASE("a vLLM body with two engines", "[engine_metrics]") {
  const std::string body = read_fixture("vllm_metrics_dp2.txt");
  REQUIRE(body.size() > 80'000);  // real size: histograms, counters, process and http families

  SECTION("as vLLM sends it") {
    engine_metrics m = parse_ok(body);
    CHECK(m.running == 37 + 29);
    CHECK(m.waiting == 5 + 0);
    CHECK(m.kv_usage == 0.6873);  // the fuller engine's, not the mean
    CHECK_FALSE(m.kv_usage_legacy);
    CHECK(m.engines == 2);
    CHECK(m.block_size == 64);
    CHECK(m.num_gpu_blocks == 27356 + 27401);
  }
  SECTION("with CRLF line ends") {
    std::string crlf;
    for (char c : body) {
      if (c == '\n') crlf += '\r';
      crlf += c;
    }
    engine_metrics m = parse_ok(crlf);
    CHECK(m.running == 66);
    CHECK(m.waiting == 5);
    CHECK(m.kv_usage == 0.6873);
    CHECK(m.num_gpu_blocks == 54757);
  }
  SECTION("without its last line end") {
    std::string cut = body;
    REQUIRE(cut.back() == '\n');
    cut.pop_back();
    CHECK(parse_ok(cut).running == 66);
  }
}

TEST_CASE("every prefix of a real body is parsed or refused, never misread", "[engine_metrics]") {
  const std::string body = read_fixture("vllm_metrics_dp2.txt");
  const std::size_t kv_line = body.find("vllm:kv_cache_usage_perc{");
  const std::size_t waiting_line = body.find("vllm:num_requests_waiting{");
  REQUIRE(kv_line != std::string::npos);
  // The legacy gauge comes first in the body; a prefix that ends before the current one still
  // has a usage to report.
  const std::size_t gpu_line = body.find("vllm:gpu_cache_usage_perc{");
  REQUIRE(gpu_line < kv_line);
  for (std::size_t len = 0; len <= body.size(); len += (len < 4096 ? 1 : 97)) {
    engine_metrics m;
    engine_metrics_status st = engine_metrics::parse(std::string_view(body).substr(0, len), m);
    INFO("prefix of " << len << " bytes: " << to_string(st.error));
    if (len <= waiting_line) {
      CHECK_FALSE(st.ok());
    } else if (st.ok()) {
      // A cut inside a number can shorten it ("29.0" to "2"), never make it larger.
      CHECK(m.running <= 66);
      CHECK(m.waiting <= 5);
      CHECK(m.kv_usage <= 0.6873);
      CHECK(m.engines <= 2);
    }
    if (len <= gpu_line) CHECK_FALSE(st.ok());
  }
}

TEST_CASE("older vLLM reports KV usage as vllm:gpu_cache_usage_perc", "[engine_metrics]") {
  const std::string running_waiting =
      "vllm:num_requests_running{model_name=\"m\"} 4.0\n"
      "vllm:num_requests_waiting{model_name=\"m\"} 0.0\n";
  SECTION("only the old name") {
    engine_metrics m = parse_ok(running_waiting +
                                "# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage.\n"
                                "# TYPE vllm:gpu_cache_usage_perc gauge\n"
                                "vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.5\n");
    CHECK(m.kv_usage == 0.5);
    CHECK(m.kv_usage_legacy);
    CHECK(m.engines == 1);
  }
  SECTION("both names: the current one wins, whatever their order and values") {
    engine_metrics m = parse_ok(running_waiting +
                                "vllm:kv_cache_usage_perc{model_name=\"m\"} 0.125\n"
                                "vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.75\n");
    CHECK(m.kv_usage == 0.125);
    CHECK_FALSE(m.kv_usage_legacy);
  }
}

TEST_CASE("vLLM with several API servers (prometheus_client multiprocess mode)",
          "[engine_metrics]") {
  // The scheduler gauges are "mostrecent" (one series per engine); the KV gauge has the default
  // mode "all", which keeps one series per process under a pid label, and no _created lines.
  engine_metrics m = parse_ok(
      "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
      "# TYPE vllm:kv_cache_usage_perc gauge\n"
      "vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\",pid=\"4101\"} 0.31\n"
      "vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\",pid=\"4102\"} 0.31\n"
      "vllm:kv_cache_usage_perc{engine=\"1\",model_name=\"m\",pid=\"4101\"} 0.82\n"
      "vllm:kv_cache_usage_perc{engine=\"1\",model_name=\"m\",pid=\"4102\"} 0.82\n"
      "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
      "# TYPE vllm:num_requests_running gauge\n"
      "vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 12.0\n"
      "vllm:num_requests_running{engine=\"1\",model_name=\"m\"} 30.0\n"
      "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
      "# TYPE vllm:num_requests_waiting gauge\n"
      "vllm:num_requests_waiting{engine=\"0\",model_name=\"m\"} 0.0\n"
      "vllm:num_requests_waiting{engine=\"1\",model_name=\"m\"} 7.0\n");
  CHECK(m.kv_usage == 0.82);  // the max ignores the repetition a mean or a sum would not
  CHECK(m.running == 42);
  CHECK(m.waiting == 7);
  CHECK(m.engines == 2);
}

TEST_CASE("the Prometheus text format's corners", "[engine_metrics]") {
  SECTION("escaped label values holding quotes, braces, commas and blanks") {
    engine_metrics m = parse_ok(
        "vllm:num_requests_running{model_name=\"a\\\"} b, c=\\\"d\\\\\",engine=\"0\"} 3\n"
        "vllm:num_requests_running{engine=\"1\",model_name=\"x\\ny\\\\\"} 4\n"
        "vllm:num_requests_waiting{model_name=\"}\"} 1\n"
        "vllm:kv_cache_usage_perc{model_name=\"\\\\\"} 0.5\n");
    CHECK(m.running == 7);
    CHECK(m.waiting == 1);
    CHECK(m.kv_usage == 0.5);
    CHECK(m.engines == 2);
  }
  SECTION("no labels, blanks around labels, a trailing comma, tabs") {
    engine_metrics m = parse_ok(
        "vllm:num_requests_running 3\n"
        "vllm:num_requests_waiting { engine = \"0\" , model_name=\"m\", } 2\n"
        "vllm:kv_cache_usage_perc{engine=\"0\"}\t0.5\t\n");
    CHECK(m.running == 3);
    CHECK(m.waiting == 2);
    CHECK(m.kv_usage == 0.5);
  }
  SECTION("timestamps after values") {
    engine_metrics m = parse_ok(
        "vllm:num_requests_running{engine=\"0\"} 3 1763620000123\n"
        "vllm:num_requests_waiting{engine=\"0\"} 2 -5\n"
        "vllm:kv_cache_usage_perc{engine=\"0\"} 0.5 1763620000123 \r\n");
    CHECK(m.running == 3);
    CHECK(m.waiting == 2);
  }
  SECTION("Go's number forms, rounded to whole requests") {
    engine_metrics m = parse_ok(
        "vllm:num_requests_running{engine=\"0\"} 1e+02\n"
        "vllm:num_requests_running{engine=\"1\"} +2.6\n"
        "vllm:num_requests_waiting{engine=\"0\"} 0.4\n"
        "vllm:kv_cache_usage_perc{engine=\"0\"} 1\n"
        "vllm:kv_cache_usage_perc{engine=\"1\"} 0\n");
    CHECK(m.running == 103);
    CHECK(m.waiting == 0);
    CHECK(m.kv_usage == 1.0);
  }
  SECTION("comments, blank lines, leading blanks, a byte order mark, OpenMetrics' # EOF") {
    engine_metrics m = parse_ok(
        "\xEF\xBB\xBF# HELP vllm:num_requests_running Number of requests \\n with \\\\ escapes.\n"
        "# TYPE vllm:num_requests_running gauge\n"
        "\n"
        "   \t\n"
        "  vllm:num_requests_running{engine=\"0\"} 5\n"
        "#vllm:num_requests_running{engine=\"1\"} 500\n"
        "vllm:num_requests_waiting{engine=\"0\"} 0\n"
        "vllm:kv_cache_usage_perc{engine=\"0\"} 0.5\n"
        "# EOF\n");
    CHECK(m.running == 5);
  }
  SECTION("names that only start like a family we read are other families") {
    engine_metrics m = parse_ok(minimal +
                                "vllm:num_requests_running_total{engine=\"0\"} 99\n"
                                "vllm:num_requests_waiting_by_reason{reason=\"x\"} 99\n"
                                "vllm:kv_cache_usage_perc_max 0.99\n"
                                "vllm:cache_config_info_extra{block_size=\"x\"} 1\n"
                                "vllm:num_preemptions_total{engine=\"0\"} NaN\n"
                                "xvllm:num_requests_running 99\n"
                                "http_requests_total{handler=\"/metrics\"} +Inf\n");
    CHECK(m.running == 2);
    CHECK(m.waiting == 1);
    CHECK(m.kv_usage == 0.25);
    CHECK(m.block_size == 0);
  }
}

TEST_CASE("vllm:cache_config_info", "[engine_metrics]") {
  SECTION("absent: zeros, not an error") {
    engine_metrics m = parse_ok(minimal);
    CHECK(m.block_size == 0);
    CHECK(m.num_gpu_blocks == 0);
  }
  SECTION("summed over engines, labels in any order") {
    engine_metrics m = parse_ok(
        minimal +
        "vllm:cache_config_info{block_size=\"16\",cache_dtype=\"auto\",num_gpu_blocks=\"1000\","
        "engine=\"0\"} 1.0\n"
        "vllm:cache_config_info{engine=\"1\",num_gpu_blocks=\"2000\",num_cpu_blocks=\"None\","
        "block_size=\"16\"} 1.0\n");
    CHECK(m.block_size == 16);
    CHECK(m.num_gpu_blocks == 3000);
  }
  SECTION("num_gpu_blocks not known yet (\"None\") on one engine: the total is unknown") {
    engine_metrics m = parse_ok(
        minimal + "vllm:cache_config_info{block_size=\"128\",num_gpu_blocks=\"1000\"} 1\n" +
        "vllm:cache_config_info{block_size=\"128\",num_gpu_blocks=\"None\"} 1\n");
    CHECK(m.block_size == 128);
    CHECK(m.num_gpu_blocks == 0);
  }
  SECTION("bad numbers are bad values") {
    for (const char* labels :
         {"block_size=\"sixteen\"", "block_size=\"0\"", "block_size=\"-16\"", "block_size=\"16 \"",
          "block_size=\"\"", "block_size=\"99999999999\"", "num_gpu_blocks=\"1e3\"",
          "num_gpu_blocks=\"99999999999999\"", "num_gpu_blocks=\"12\\\"\""}) {
      std::string body = minimal + "vllm:cache_config_info{" + labels + "} 1\n";
      INFO(body);
      engine_metrics_status st = parse_status(body);
      CHECK(st.error == engine_metrics_error::bad_value);
      CHECK(st.offset == minimal.size());
    }
  }
}

TEST_CASE("bad input is an error value with the offending line", "[engine_metrics]") {
  SECTION("not Prometheus text") {
    for (std::string body :
         {std::string("<html><body>502 Bad Gateway</body></html>\n"),
          std::string("{\"error\":\"not found\"}"), std::string("\x00\x01", 2),
          minimal + "<!-- a proxy's error page -->\n", minimal + "  {\"object\":\"error\"}\n"}) {
      INFO(body);
      engine_metrics_status st = parse_status(body);
      CHECK(st.error == engine_metrics_error::not_prometheus_text);
    }
    CHECK(parse_status(minimal + "<p>\n").offset == minimal.size());
  }
  SECTION("missing families, named in order running, waiting, kv usage") {
    CHECK(parse_status("").error == engine_metrics_error::missing_running);
    CHECK(parse_status("# only comments\n\n").error == engine_metrics_error::missing_running);
    CHECK(parse_status("vllm:num_requests_waiting 1\nvllm:kv_cache_usage_perc 0\n").error ==
          engine_metrics_error::missing_running);
    CHECK(parse_status("vllm:num_requests_running 1\nvllm:kv_cache_usage_perc 0\n").error ==
          engine_metrics_error::missing_waiting);
    const std::string no_kv = "vllm:num_requests_running 1\nvllm:num_requests_waiting 0\n";
    engine_metrics_status st = parse_status(no_kv);
    CHECK(st.error == engine_metrics_error::missing_kv_usage);
    CHECK(st.offset == no_kv.size());
    // A TYPE line without samples is not a family with a value.
    CHECK(parse_status("# TYPE vllm:num_requests_running gauge\n"
                       "vllm:num_requests_waiting 1\nvllm:kv_cache_usage_perc 0\n")
              .error == engine_metrics_error::missing_running);
  }
  SECTION("values that are NaN, infinite, negative, huge, or not a fraction") {
    for (const char* line :
         {"vllm:num_requests_running{engine=\"1\"} NaN", "vllm:num_requests_running +Inf",
          "vllm:num_requests_waiting -Inf", "vllm:num_requests_waiting -1",
          "vllm:num_requests_waiting 1e12", "vllm:num_requests_running 1e400",
          "vllm:num_requests_running 1000001", "vllm:kv_cache_usage_perc 1.5",
          "vllm:kv_cache_usage_perc -0.01", "vllm:kv_cache_usage_perc NaN",
          "vllm:kv_cache_usage_perc 95", "vllm:gpu_cache_usage_perc +Inf"}) {
      std::string body = minimal + line + "\n";
      INFO(body);
      engine_metrics_status st = parse_status(body);
      CHECK(st.error == engine_metrics_error::bad_value);
      CHECK(st.offset == minimal.size());
    }
  }
  SECTION("lines of a family we read that do not parse") {
    for (const char* line : {
             "vllm:num_requests_running",
             "vllm:num_requests_running ",
             "vllm:num_requests_running{engine=\"0\" 3",
             "vllm:num_requests_running{engine=\"0} 3",
             "vllm:num_requests_running{engine=0} 3",
             "vllm:num_requests_running{engine} 3",
             "vllm:num_requests_running{=\"0\"} 3",
             "vllm:num_requests_running{:x=\"0\"} 3",
             "vllm:num_requests_running{engine=\"0\",,} 3",
             "vllm:num_requests_running{engine=\"0\"}",
             "vllm:num_requests_running{engine=\"0\\\"} 3",
             "vllm:num_requests_running 3.0.0",
             "vllm:num_requests_running ++3",
             "vllm:num_requests_running +-3",
             "vllm:num_requests_running 0x10",
             "vllm:num_requests_running three",
             "vllm:num_requests_running 3 abc",
             "vllm:num_requests_running 3 1763620000123 7",
             "vllm:num_requests_running 3 17.5",
             "vllm:kv_cache_usage_perc{engine=\"0\"} 0.5%",
             "vllm:cache_config_info{block_size=\"16\"",
         }) {
      std::string body = minimal + line + "\n";
      INFO(body);
      engine_metrics_status st = parse_status(body);
      CHECK(st.error == engine_metrics_error::malformed_sample);
      CHECK(st.offset == minimal.size());
    }
  }
  SECTION("the first fault wins, and the output is left as it was") {
    engine_metrics m;
    m.running = 11;
    m.kv_usage = 0.5;
    engine_metrics_status st = engine_metrics::parse(
        "vllm:num_requests_running 1\n<html>\nvllm:kv_cache_usage_perc 2\n", m);
    CHECK(st.error == engine_metrics_error::not_prometheus_text);
    CHECK(st.offset == 28);
    CHECK(m.running == 11);
    CHECK(m.kv_usage == 0.5);
    CHECK(parse_status("vllm:kv_cache_usage_perc 2\n").error == engine_metrics_error::bad_value);
  }
  SECTION("every reason has a name") {
    CHECK(to_string(engine_metrics_error::none) == "ok");
    CHECK(to_string(engine_metrics_error::not_prometheus_text) == "not_prometheus_text");
    CHECK(to_string(engine_metrics_error::malformed_sample) == "malformed_sample");
    CHECK(to_string(engine_metrics_error::bad_value) == "bad_value");
    CHECK(to_string(engine_metrics_error::missing_running) == "missing_running");
    CHECK(to_string(engine_metrics_error::missing_waiting) == "missing_waiting");
    CHECK(to_string(engine_metrics_error::missing_kv_usage) == "missing_kv_usage");
  }
}

TEST_CASE("a wide data-parallel server: one series per engine", "[engine_metrics]") {
  // 64 engines, in the order and label layout vLLM uses, each family's series together.
  std::string body;
  auto series = [&](const char* family, auto value_of) {
    body += std::string("# TYPE ") + family + " gauge\n";
    for (int k = 0; k < 64; ++k) {
      body += std::string(family) + "{model_name=\"m\",engine=\"" + std::to_string(k) + "\"} " +
              value_of(k) + "\n";
    }
  };
  series("vllm:num_requests_running", [](int k) { return std::to_string(k) + ".0"; });
  series("vllm:num_requests_waiting", [](int k) { return std::to_string(k % 4) + ".0"; });
  series("vllm:kv_cache_usage_perc",
         [](int k) { return k == 17 ? std::string("0.99") : std::string("0.5"); });
  series("vllm:cache_config_info", [](int) { return std::string("1.0"); });
  for (int k = 0; k < 64; ++k) {
    std::string needle = "vllm:cache_config_info{model_name=\"m\"";
    std::size_t at = body.find(needle + ",engine=\"" + std::to_string(k) + "\"}");
    REQUIRE(at != std::string::npos);
    body.insert(at + needle.size(),
                ",block_size=\"128\",num_gpu_blocks=\"" + std::to_string(1000 + k) + "\"");
  }
  engine_metrics m = parse_ok(body);
  CHECK(m.engines == 64);
  CHECK(m.running == 64 * 63 / 2);
  CHECK(m.waiting == 16 * (0 + 1 + 2 + 3));
  CHECK(m.kv_usage == 0.99);  // one full rank is enough to be saturated
  CHECK(m.block_size == 128);
  CHECK(m.num_gpu_blocks == 64 * 1000 + 64 * 63 / 2);
}

TEST_CASE("damaged bodies are refused or read within bounds, never crash", "[engine_metrics]") {
  // Deterministic damage to a small real-shaped body: bytes overwritten with the characters that
  // matter to the grammar, bytes dropped, lines cut. Run under tests/sanitize.sh this also
  // proves no read past the body.
  const std::string base =
      "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
      "# TYPE vllm:num_requests_running gauge\n"
      "vllm:num_requests_running{model_name=\"zai-org/GLM-4.6\",engine=\"0\"} 37.0\n"
      "vllm:num_requests_running{model_name=\"zai-org/GLM-4.6\",engine=\"1\"} 29.0\n"
      "vllm:num_requests_waiting{model_name=\"zai-org/GLM-4.6\",engine=\"0\"} 5.0\n"
      "vllm:num_requests_waiting{model_name=\"zai-org/GLM-4.6\",engine=\"1\"} 0.0\r\n"
      "vllm:kv_cache_usage_perc{model_name=\"zai-org/GLM-4.6\",engine=\"0\"} 0.4127\n"
      "vllm:kv_cache_usage_perc{model_name=\"zai-org/GLM-4.6\",engine=\"1\"} 0.6873\n"
      "vllm:cache_config_info{block_size=\"64\",num_gpu_blocks=\"27356\",engine=\"0\"} 1.0\n";
  REQUIRE(parse_ok(base).running == 66);
  const char alphabet[] = {'"',  '\\', '{', '}', ',', '=', ' ', '\n', '\r', '#',
                           '\0', '9',  'e', '-', '+', '.', 'N', 'I',  '\t', '\xff'};
  std::mt19937 rng(12);
  int refused = 0, read = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string body = base;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !body.empty(); ++e) {
      std::size_t at = rng() % body.size();
      switch (rng() % 3) {
        case 0:
          body[at] = alphabet[rng() % sizeof alphabet];
          break;
        case 1:
          body.erase(at, 1 + rng() % 8);
          break;
        default:
          body.resize(at);
          break;
      }
    }
    engine_metrics m;
    engine_metrics_status st = engine_metrics::parse(body, m);
    INFO(body);
    if (!st.ok()) {
      ++refused;
      CHECK(st.offset <= body.size());
      continue;
    }
    ++read;
    CHECK(m.engines >= 1);
    CHECK(m.kv_usage >= 0.0);
    CHECK(m.kv_usage <= 1.0);
    CHECK(m.running <= m.engines * 1'000'000ull);
    CHECK(m.block_size <= engine_metrics::max_block_size);
  }
  // Both outcomes occur, so the bounds above were exercised.
  CHECK(refused > 1000);
  CHECK(read > 1000);
}

TEST_CASE("odd line structures", "[engine_metrics]") {
  SECTION("carriage returns only (no line feed): one long line, refused") {
    std::string cr = minimal;
    for (char& c : cr) {
      if (c == '\n') c = '\r';
    }
    CHECK(parse_status(cr).error == engine_metrics_error::malformed_sample);
  }
  SECTION("a very long label value and a very long comment") {
    std::string big(1 << 20, 'x');
    engine_metrics m = parse_ok("# HELP " + big + "\n" + "vllm:num_requests_running{model_name=\"" +
                                big + "\"} 4\n" + minimal);
    CHECK(m.running == 6);
  }
  SECTION("the same series twice is counted twice (the text is taken as sent)") {
    engine_metrics m = parse_ok(minimal + minimal);
    CHECK(m.running == 4);
    CHECK(m.engines == 2);
  }
}
