#pragma once

#include <chrono>
#include <cstddef>

#include "balancer/backend_address.hpp"
#include "protocol/sse_rewrite.hpp"
#include "proxy/core/asio.hpp"

namespace glm::proxy {

class answer_writer;
class upstream_exchange;

// Relays one decoder's SSE answer body to the client, as nginx does with proxy_buffering off:
// each read of the upstream, all the complete events it brought (rewritten by `rewrite`), goes
// to the client as one chunk in one gather write, before the next read. So a slow client slows
// the decoder instead of growing memory, and a decoder that is ahead costs one write per read,
// not one per event.
//
// The relay owns the upstream connection's end: read to its end it goes back to the pool (before
// the last client write, so the client's next request can reuse it); any other ending closes it
// (vLLM then aborts the sequence and frees its KV cache). Answering the client after a failure
// (an error event, the drain) is the caller's: it knows why the stream stopped.
//
// Usable by any flow that has an answered upstream_exchange and an answer_writer (the PD decode
// round, the layerwise decode). Stateless; the buffer lives on the coroutine frame.
class sse_relay {
 public:
  enum class ending {
    complete,         // the decoder's body ended; the client got all of it and the last chunk
    recomputed,       // the decoder preempted the request (rewrite.recomputed()): re-prefill
    client_lost,      // a write to the client failed or timed out
    upstream_failed,  // the read failed: `ec` (a timeout is beast::error::timeout)
  };
  struct result {
    ending how;
    error_code ec;  // for upstream_failed
  };

  // Told about the relay's progress; called on the relay's coroutine.
  class observer {
   public:
    // Body bytes arrived from the decoder, before they are written to the client.
    virtual void on_decode_bytes() = 0;
    // `events` complete events were passed to the client by the last write.
    virtual void on_events(std::size_t events) = 0;

   protected:
    ~observer() = default;
  };

  // One read of the upstream, at most; 4 KiB (nginx's smallest proxy buffer) holds a dozen vLLM
  // chunks, and an event larger than a read is reassembled by the rewrite's framer.
  static constexpr std::size_t buffer_bytes = 4 * 1024;

  // Starts the client's stream if it has not begun, then relays until one of the endings.
  // `idle` bounds each upstream read. `up` must have read the answer's header.
  static net::awaitable<result> run(upstream_exchange& up, const balancer::backend_address& from,
                                    answer_writer& out, protocol::sse_rewrite& rewrite,
                                    std::chrono::steady_clock::duration idle, observer& obs);
};

}  // namespace glm::proxy
