// Cost of cache-aware routing per request: hashing a prompt into prefix blocks
// (protocol/prefix_hasher, outside the balancer's lock) and the cache_aware choice (prefix index
// lookups on every prefiller plus the index update, under the lock), for chat bodies of 64 KiB
// and 1 MiB. Prints the median and p99 of each, and the command that reproduces them.
//
//   build/bench_prefix_hash [iterations]      (default 2000)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "balancer/balancer.hpp"
#include "protocol/prefix_hasher.hpp"
#include "protocol/request_splicer.hpp"

namespace {

using glm::balancer::backend_address;
using glm::balancer::balancer;
using glm::protocol::prefix_digest;
using glm::protocol::prefix_hasher;

std::string words(std::uint64_t seed, std::size_t n) {
  std::string s;
  s.reserve(n + 16);
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ULL | 1;
  while (s.size() < n) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    for (int k = 0; k < 2 + static_cast<int>(x % 6); ++k)
      s += static_cast<char>('a' + (x >> (7 * k)) % 26);
    s += ' ';
  }
  s.resize(n);
  return s;
}

// A conversation of `bytes` total: a system prompt, then user/assistant turns of ~1 KiB.
std::string chat_body(std::uint64_t conv, std::size_t bytes) {
  std::string body =
      R"({"model":"glm-5.2","stream":true,"messages":[{"role":"system","content":")" +
      words(1, 2048) + "\"}";
  int turn = 0;
  while (body.size() + 1100 < bytes) {
    body += std::string(R"(,{"role":")") + (turn % 2 == 0 ? "user" : "assistant") +
            R"(","content":")" + words(conv * 1000 + turn, 1024) + "\"}";
    ++turn;
  }
  body += "]}";
  return body;
}

struct stats {
  double median_us;
  double p99_us;
};

stats summarize(std::vector<double>& ns) {
  std::sort(ns.begin(), ns.end());
  return {ns[ns.size() / 2] / 1000.0, ns[ns.size() * 99 / 100] / 1000.0};
}

void run(std::size_t bytes, int iterations) {
  std::vector<backend_address> prefillers;
  for (int i = 1; i <= 4; ++i)
    prefillers.push_back(*backend_address::parse("127.0.0.1:" + std::to_string(8100 + i)));
  balancer::options opts;
  opts.routing.prefill_policy = glm::balancer::route_policy::cache_aware;
  balancer lb(prefillers, {*backend_address::parse("127.0.0.1:8200")}, opts);

  // Warm the indexes with other conversations, so lookups search populated tables.
  const int conversations = 64;
  std::vector<std::string> bodies;
  std::vector<glm::protocol::client_request> reqs(conversations);
  for (int c = 0; c < conversations; ++c)
    bodies.push_back(chat_body(static_cast<std::uint64_t>(c + 1), bytes));
  prefix_digest d;
  for (int c = 0; c < conversations; ++c) {
    if (auto err = glm::protocol::request_splicer::parse(bodies[c], reqs[c])) {
      std::fprintf(stderr, "bad body: %s\n", err->c_str());
      std::exit(1);
    }
    prefix_hasher::digest(reqs[c], {}, d);
    auto lease = lb.begin_request(bodies[c].size());
    lease.choose_prefiller(glm::balancer::to_route_request(d));
    lease.prefill_usage(static_cast<std::int64_t>(d.prompt_bytes / 4), 0);
  }

  std::vector<double> hash_ns, choose_ns, total_ns;
  hash_ns.reserve(iterations);
  choose_ns.reserve(iterations);
  std::size_t blocks = 0;
  for (int i = 0; i < iterations; ++i) {
    const auto& req = reqs[static_cast<std::size_t>(i % conversations)];
    const auto t0 = std::chrono::steady_clock::now();
    prefix_hasher::digest(req, {}, d);
    const auto t1 = std::chrono::steady_clock::now();
    auto lease = lb.begin_request(req.body.size());
    auto choice = lease.choose_prefiller(glm::balancer::to_route_request(d));
    const auto t2 = std::chrono::steady_clock::now();
    if (!choice) std::abort();
    blocks = d.blocks.size();
    hash_ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
    choose_ns.push_back(std::chrono::duration<double, std::nano>(t2 - t1).count());
    total_ns.push_back(std::chrono::duration<double, std::nano>(t2 - t0).count());
  }
  const auto h = summarize(hash_ns);
  const auto c = summarize(choose_ns);
  const auto t = summarize(total_ns);
  std::printf(
      "%8zu KiB body  %4zu blocks  hash %7.1f us (p99 %7.1f)  choose %6.1f us (p99 %6.1f)  "
      "total %7.1f us (p99 %7.1f)\n",
      bytes / 1024, blocks, h.median_us, h.p99_us, c.median_us, c.p99_us, t.median_us, t.p99_us);
}

}  // namespace

int main(int argc, char** argv) {
  const int iterations = argc > 1 ? std::max(100, std::atoi(argv[1])) : 2000;
  std::printf(
      "cache_aware routing cost per request, 4 prefillers, 64 conversations indexed, "
      "%d iterations (median, p99)\n",
      iterations);
  run(64 * 1024, iterations);
  run(1024 * 1024, iterations / 4);
  std::printf("targets: total <= 20 us at 64 KiB, <= 150 us at 1 MiB\n");
  std::printf(
      "reproduce: cmake --build build --target bench_prefix_hash && build/bench_prefix_hash %d\n",
      iterations);
  return 0;
}
