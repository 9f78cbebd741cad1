#include "proxy/pd/sse_relay.hpp"

#include <array>

#include "proxy/pd/answer_writer.hpp"
#include "proxy/upstream/upstream_exchange.hpp"

namespace glm::proxy {

net::awaitable<sse_relay::result> sse_relay::run(upstream_exchange& up,
                                                 const balancer::backend_address& from,
                                                 answer_writer& out, protocol::sse_rewrite& rewrite,
                                                 std::chrono::steady_clock::duration idle,
                                                 observer& obs) {
  // No co_await inside && or ?: anywhere in proxy/: g++ 12 miscompiles a co_await that a
  // short-circuit may skip (the frame is later resumed at a bad point: SIGILL).
  if (!out.stream_started()) {
    bool started = co_await out.start_stream();
    if (!started) {
      up.close();
      co_return result{ending::client_lost, {}};
    }
  }
  // Not value-initialised: zeroing 4 KiB per stream buys nothing, every byte used is read first.
  std::array<char, buffer_bytes> buffer;
  for (;;) {
    auto [ec, n] = co_await up.read_some(buffer.data(), buffer.size(), idle);
    if (n > 0) {
      obs.on_decode_bytes();
      const auto& parts = rewrite.feed({buffer.data(), n});
      if (up.answer_complete() && !rewrite.recomputed()) {
        // The read that ended the body: its events and the end of the client's body go in one
        // write, and the connection back to the pool first.
        up.recycle(from);
        bool written = co_await out.finish_stream(parts, rewrite.pending());
        obs.on_events(rewrite.events());
        co_return result{written ? ending::complete : ending::client_lost, {}};
      }
      // Every complete event of this read, in one chunk: one gather write.
      bool written = co_await out.chunk(parts);
      obs.on_events(rewrite.events());
      if (!written) {
        up.close();  // never leave vLLM generating for a client that is gone
        co_return result{ending::client_lost, {}};
      }
      if (rewrite.recomputed()) {
        up.close();  // the rest of this stream is only its [DONE]
        co_return result{ending::recomputed, {}};
      }
    }
    if (ec) {
      up.close();
      co_return result{ending::upstream_failed, ec};
    }
    if (n == 0) break;
  }
  up.recycle(from);  // read to its end
  co_await out.finish_stream(rewrite.pending());
  co_return result{ending::complete, {}};
}

}  // namespace glm::proxy
