// libFuzzer target: protocol::sse_rewrite over a stream cut into random pieces. Without
// include_usage it changes nothing but what a "recomputed" chunk hides, so what comes out (plus
// what it still holds) is the input, or, once it saw a recompute, a prefix of it; with
// include_usage it must not crash, and cutting the stream differently must not change its output.
// Built by tests/fuzz/run.sh only.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/sse_rewrite.hpp"

using glm::protocol::generation_progress;
using glm::protocol::sse_rewrite;

namespace {

#define FUZZ_ASSERT(cond) \
  do {                    \
    if (!(cond)) {        \
      std::abort();       \
    }                     \
  } while (0)

struct result {
  std::string out;
  bool recomputed = false;
  generation_progress progress;
};

result run(std::string_view input, const std::vector<std::size_t>& cuts, bool usage,
           std::size_t limit) {
  result r;
  sse_rewrite::options opts;
  opts.include_usage = usage;
  opts.cached_tokens = 7;
  opts.max_event_bytes = limit;
  sse_rewrite rewrite(opts, r.progress);
  std::size_t last = 0;
  auto feed = [&](std::string_view piece) {
    for (std::string_view part : rewrite.feed(piece)) r.out += part;
  };
  for (std::size_t cut : cuts) {
    feed(input.substr(last, cut - last));
    last = cut;
  }
  feed(input.substr(last));
  r.recomputed = rewrite.recomputed();
  if (!r.recomputed) r.out += rewrite.pending();
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const unsigned seed = data[0];
  const unsigned density = data[1] % 8 + 1;
  std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);
  std::minstd_rand rng(seed);
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < input.size(); ++i) {
    if (rng() % density == 0) cuts.push_back(i);
  }

  const result whole = run(input, {}, false, std::size_t(1) << 20);
  if (whole.recomputed) {
    FUZZ_ASSERT(input.substr(0, whole.out.size()) == whole.out);
  } else {
    FUZZ_ASSERT(whole.out == input);
  }
  const result split = run(input, cuts, false, std::size_t(1) << 20);
  FUZZ_ASSERT(split.out == whole.out);
  FUZZ_ASSERT(split.progress.text == whole.progress.text);
  FUZZ_ASSERT(split.progress.chunks == whole.progress.chunks);

  // A small event limit passes big events through unframed: never a byte lost or repeated.
  const result limited = run(input, cuts, false, seed % 64 + 1);
  if (!limited.recomputed) FUZZ_ASSERT(limited.out == input);

  const result usage_whole = run(input, {}, true, std::size_t(1) << 20);
  const result usage_split = run(input, cuts, true, std::size_t(1) << 20);
  FUZZ_ASSERT(usage_whole.out == usage_split.out);
  return 0;
}
