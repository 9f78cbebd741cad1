// libFuzzer target: however a stream is cut into pieces, sse_framer yields the same events, and
// the events plus what it still holds are exactly the input. Built by tests/fuzz/run.sh only.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/sse_framer.hpp"

using glm::protocol::sse_framer;

namespace {

#define FUZZ_ASSERT(cond) \
  do {                    \
    if (!(cond)) {        \
      std::abort();       \
    }                     \
  } while (0)

struct result {
  std::vector<std::string> events;
  std::string pending;
  bool ok = true;
};

result run(std::string_view input, const std::vector<std::size_t>& cuts, std::size_t limit) {
  sse_framer framer(limit);
  result out;
  std::size_t last = 0;
  auto feed = [&](std::string_view piece) {
    if (!out.ok) return;
    out.ok = framer.feed(piece, [&](std::string_view e) {
      // A view into the piece, or into the framer's buffer: never empty, always a whole event.
      FUZZ_ASSERT(!e.empty() && e.back() == '\n');
      out.events.emplace_back(e);
    });
  };
  for (std::size_t cut : cuts) {
    feed(input.substr(last, cut - last));
    last = cut;
  }
  feed(input.substr(last));
  out.pending = std::string(framer.pending());
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  // The first two bytes choose the cuts; the rest is the stream.
  const unsigned seed = data[0];
  const unsigned density = data[1] % 8 + 1;  // about one cut per `density` bytes
  std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);

  const result whole = run(input, {}, std::size_t(1) << 20);
  FUZZ_ASSERT(whole.ok);
  std::string joined;
  for (const auto& e : whole.events) joined += e;
  joined += whole.pending;
  FUZZ_ASSERT(joined == input);

  std::minstd_rand rng(seed);
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < input.size(); ++i) {
    if (rng() % density == 0) cuts.push_back(i);
  }
  const result split = run(input, cuts, std::size_t(1) << 20);
  FUZZ_ASSERT(split.ok);
  FUZZ_ASSERT(split.events == whole.events);
  FUZZ_ASSERT(split.pending == whole.pending);

  // With a small limit the framer may stop early, but what it handed out is still a prefix of
  // the events.
  const result limited = run(input, cuts, seed % 64 + 1);
  FUZZ_ASSERT(limited.events.size() <= whole.events.size());
  for (std::size_t i = 0; i < limited.events.size(); ++i) {
    FUZZ_ASSERT(limited.events[i] == whole.events[i]);
  }
  return 0;
}
