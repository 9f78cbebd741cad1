// Routing policies against simulated prefix caches: no sockets, no sleeping, deterministic.
//
// K conversations of T turns (groups share a system prompt, ~1 KiB of new text a turn, short
// answers), interleaved turn by turn in a shuffled order, `window` prefills in flight: each answer
// comes back `window` choices later with the cached_tokens a prefiller whose cache is an LRU of the
// same prefix blocks (capacity: the working set fits the prefillers together, not one alone) would
// report. Prints per policy the hit ratio (cached / prompt bytes), the request share per
// prefiller (max/min) and the mispredictions, plus the oracle (one unbounded cache) and two
// replicas that alternate the turns of every conversation. A figure for the design, not the
// end-to-end bench (bench/ runs real processes).
//
//   build/bench_routing_sim [conversations] [turns] [window]     (default 64 8 8)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "balancer/balancer.hpp"
#include "protocol/prefix_blocks.hpp"
#include "protocol/prefix_hasher.hpp"
#include "protocol/request_splicer.hpp"

namespace {

using glm::balancer::backend_address;
using glm::balancer::balancer;
using glm::balancer::route_policy;
using glm::protocol::prefix_blocks;

std::string words(std::uint64_t seed, std::size_t n) {
  std::string s;
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ULL | 1;
  while (s.size() < n) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    for (int k = 0; k < 2 + static_cast<int>(x % 6); ++k) {
      s += static_cast<char>('a' + (x >> (7 * k)) % 26);
    }
    s += ' ';
  }
  s.resize(n);
  return s;
}

std::string body(int conv, int turn) {
  std::string b = R"({"model":"glm","messages":[{"role":"system","content":")" +
                  words(1000 + static_cast<std::uint64_t>(conv % 8), 1500) + "\"}";
  for (int t = 1; t <= turn; ++t) {
    b += R"(,{"role":"user","content":")" +
         words(static_cast<std::uint64_t>(conv * 100 + t), 1024) + "\"}";
    if (t < turn) {
      b += R"(,{"role":"assistant","content":")" +
           words(static_cast<std::uint64_t>(conv * 100 + t + 50), 64) + "\"}";
    }
  }
  return b + "]}";
}

// A prefiller's prefix cache: an LRU of block hashes.
struct sim_cache {
  std::size_t capacity;
  std::list<std::uint64_t> lru;
  std::unordered_map<std::uint64_t, std::list<std::uint64_t>::iterator> map;
  std::size_t cached_blocks(const std::vector<std::uint64_t>& blocks) const {
    std::size_t n = 0;
    while (n < blocks.size() && map.count(blocks[n]) != 0) ++n;
    return n;
  }
  void fill(const std::vector<std::uint64_t>& blocks) {
    for (std::size_t k = blocks.size(); k-- > 0;) {
      auto it = map.find(blocks[k]);
      if (it != map.end()) {
        lru.splice(lru.begin(), lru, it->second);
        continue;
      }
      lru.push_front(blocks[k]);
      map[blocks[k]] = lru.begin();
      if (map.size() > capacity) {
        map.erase(lru.back());
        lru.pop_back();
      }
    }
  }
};

struct request {
  int conv;
  std::string text;
  glm::protocol::client_request req;
  glm::protocol::prefix_digest d;
};

struct result {
  double cached = 0, prompt = 0;
  std::map<std::string, int> share;
  std::uint64_t mispredictions = 0;
  std::map<std::string, std::uint64_t> reasons;
};

result run(const std::vector<std::unique_ptr<request>>& reqs, route_policy policy, int replicas,
           std::size_t window, std::size_t capacity) {
  std::vector<backend_address> p, d;
  for (int i = 1; i <= 4; ++i)
    p.push_back(*backend_address::parse("127.0.0.1:" + std::to_string(8100 + i)));
  d.push_back(*backend_address::parse("127.0.0.1:8200"));
  balancer::options o;
  o.routing.prefill_policy = policy;
  std::vector<std::unique_ptr<balancer>> lbs;
  for (int r = 0; r < replicas; ++r) lbs.push_back(std::make_unique<balancer>(p, d, o));
  std::map<std::string, sim_cache> caches;
  for (const auto& a : p) caches.emplace(a.to_string(), sim_cache{capacity, {}, {}});

  struct inflight {
    glm::balancer::request_lease lease;
    const request* r;
    std::string at;
  };
  std::deque<inflight> q;
  result out;
  auto finish = [&] {
    auto& f = q.front();
    auto& cache = caches.at(f.at);
    const std::size_t hit = cache.cached_blocks(f.r->d.blocks);
    const std::size_t hit_bytes = hit == 0 ? 0 : prefix_blocks::end(hit - 1);
    cache.fill(f.r->d.blocks);
    out.cached += static_cast<double>(hit_bytes);
    out.prompt += static_cast<double>(f.r->d.prompt_bytes);
    f.lease.prefill_usage(static_cast<std::int64_t>(f.r->d.prompt_bytes / 4),
                          static_cast<std::int64_t>(hit_bytes / 4));
    q.pop_front();
  };
  std::size_t i = 0;
  for (const auto& r : reqs) {
    // Replicas alternate a conversation's turns (each request goes to the replica of its index).
    auto& lb = *lbs[i++ % lbs.size()];
    auto lease = lb.begin_request(r->text.size());
    auto c = lease.choose_prefiller(
        glm::balancer::to_route_request(r->d, "conv" + std::to_string(r->conv)));
    if (!c) std::abort();
    ++out.share[c->address.to_string()];
    q.push_back({std::move(lease), r.get(), c->address.to_string()});
    if (q.size() > window) finish();
  }
  while (!q.empty()) finish();
  for (auto& lb : lbs) {
    for (const auto& s : lb->instances()) out.mispredictions += s.mispredictions;
    for (const auto& dc : lb->route_decisions()) {
      if (dc.kind == glm::balancer::role::prefill && dc.count > 0) {
        out.reasons[std::string(to_string(dc.reason))] += dc.count;
      }
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const int K = argc > 1 ? std::atoi(argv[1]) : 64;
  const int T = argc > 2 ? std::atoi(argv[2]) : 8;
  const std::size_t window = argc > 3 ? static_cast<std::size_t>(std::atoi(argv[3])) : 8;
  std::vector<std::unique_ptr<request>> reqs;
  std::mt19937_64 rng(12345);  // fixed: the run is deterministic
  for (int t = 1; t <= T; ++t) {
    // Conversations take turns in a different order every round, so no policy can win by the
    // arithmetic of the order (round robin over a fixed order would pin conversations).
    std::vector<int> order(static_cast<std::size_t>(K));
    for (int c = 0; c < K; ++c) order[static_cast<std::size_t>(c)] = c;
    std::shuffle(order.begin(), order.end(), rng);
    for (int c : order) {
      auto r = std::make_unique<request>();
      r->conv = c;
      r->text = body(c, t);
      if (glm::protocol::request_splicer::parse(r->text, r->req)) std::abort();
      glm::protocol::prefix_hasher::digest(r->req, {}, r->d);
      reqs.push_back(std::move(r));
    }
  }
  // The working set: every block of every conversation's last turn.
  std::unordered_set<std::uint64_t> all;
  for (const auto& r : reqs) all.insert(r->d.blocks.begin(), r->d.blocks.end());
  const std::size_t capacity = all.size() * 2 / 5;  // 4 hold it together (1.6x), 1 holds 40 %

  // The oracle: one prefiller with an unbounded cache.
  std::unordered_set<std::uint64_t> seen;
  double oc = 0, op = 0;
  for (const auto& r : reqs) {
    std::size_t n = 0;
    while (n < r->d.blocks.size() && seen.count(r->d.blocks[n])) ++n;
    oc += n == 0 ? 0 : static_cast<double>(prefix_blocks::end(n - 1));
    op += static_cast<double>(r->d.prompt_bytes);
    seen.insert(r->d.blocks.begin(), r->d.blocks.end());
  }
  std::printf(
      "%d conversations x %d turns, %zu prefills in flight, 4 prefillers of %zu blocks "
      "(working set %zu)\n",
      K, T, window, capacity, all.size());
  std::printf("%-26s %9s %12s %15s  %s\n", "policy", "hit ratio", "share max/min", "mispredictions",
              "reasons");
  std::printf("%-26s %9.3f %12s %15s\n", "oracle (one, unbounded)", oc / op, "-", "-");
  struct row {
    const char* name;
    route_policy p;
    int replicas;
  };
  for (auto [name, p, replicas] :
       {row{"least_loaded", route_policy::least_loaded, 1},
        row{"round_robin", route_policy::round_robin, 1},
        row{"consistent_hash (session)", route_policy::consistent_hash, 1},
        row{"cache_aware", route_policy::cache_aware, 1},
        row{"cache_aware, 2 replicas", route_policy::cache_aware, 2}}) {
    auto r = run(reqs, p, replicas, window, capacity);
    int lo = 1 << 30, hi = 0;
    for (const auto& [a, n] : r.share) {
      lo = std::min(lo, n);
      hi = std::max(hi, n);
    }
    if (r.share.size() < 4) lo = 0;
    std::string reasons;
    for (const auto& [why, n] : r.reasons) reasons += why + "=" + std::to_string(n) + " ";
    std::printf("%-26s %9.3f %12.2f %15llu  %s\n", name, r.cached / r.prompt,
                lo == 0 ? 0.0 : static_cast<double>(hi) / lo,
                static_cast<unsigned long long>(r.mispredictions), reasons.c_str());
  }
  std::printf(
      "reproduce: cmake --build build --target bench_routing_sim && build/bench_routing_sim "
      "%d %d %zu\n",
      K, T, window);
  return 0;
}
