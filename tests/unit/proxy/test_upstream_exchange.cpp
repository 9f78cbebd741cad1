#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "proxy/upstream/upstream_exchange.hpp"

using namespace glm::proxy;
using namespace std::chrono_literals;

namespace {

const std::string head =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

// Events [first, last) of an SSE answer, one HTTP chunk each, as a decoder sends them; their
// bytes without the chunk framing are appended to `body`.
std::string chunks(int first, int last, std::string& body) {
  std::string wire;
  for (int i = first; i < last; ++i) {
    std::string event = "data: {\"choices\":[{\"text\":\" tok" + std::to_string(i) + "\"}]}\n\n";
    body += event;
    char size[16];
    std::snprintf(size, sizeof size, "%zx\r\n", event.size());
    wire += size + event + "\r\n";
  }
  return wire;
}

// A whole chunked SSE answer of `events` events.
std::string chunked_events(int events, std::string& body) {
  return head + chunks(0, events, body) + "0\r\n\r\n";
}

struct relayed {
  std::vector<std::string> reads;  // what each read_some() returned
  error_code ec;
};

// Serves `wire` on a loopback port, written in the given pieces (each its own write), and
// reads the answer through an upstream_exchange with a `buffer`-byte relay buffer.
relayed relay(const std::vector<std::string>& pieces, std::size_t buffer) {
  net::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  const auto port = acceptor.local_endpoint().port();
  relayed out;
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        auto [aec, peer] = co_await acceptor.async_accept(use_nothrow);
        REQUIRE_FALSE(aec);
        net::steady_timer pause(io);
        bool first = true;
        for (const std::string& piece : pieces) {
          if (!first) {
            // A pause so that pieces arrive as separate socket reads (if they did not, the test
            // would only be weaker, never wrong).
            pause.expires_after(20ms);
            co_await pause.async_wait(use_nothrow);
          }
          first = false;
          auto [wec, n] = co_await net::async_write(peer, net::buffer(piece), use_nothrow);
          REQUIRE_FALSE(wec);
        }
        // Held open until the client is done, as a keep-alive backend does.
        char byte;
        co_await peer.async_read_some(net::buffer(&byte, 1), use_nothrow);
      },
      net::detached);
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        upstream_exchange up(co_await net::this_coro::executor);
        glm::balancer::backend_address to{"127.0.0.1", port};
        // No co_await inside a Catch macro: its try/catch and short-circuits trip g++ 12.
        error_code cec = co_await up.connect(to, 5s);
        REQUIRE_FALSE(cec);
        error_code hec = co_await up.read_header(5s);
        REQUIRE_FALSE(hec);
        std::vector<char> data(buffer);
        for (;;) {
          auto [ec, n] = co_await up.read_some(data.data(), data.size(), 5s);
          if (n > 0) out.reads.emplace_back(data.data(), n);
          if (ec || n == 0) {
            out.ec = ec;
            break;
          }
        }
        up.close();
      },
      net::detached);
  io.run_for(30s);
  return out;
}

std::string joined(const std::vector<std::string>& reads) {
  std::string all;
  for (const auto& r : reads) all += r;
  return all;
}

}  // namespace

TEST_CASE("upstream_exchange::read_some returns every chunk one socket read brought") {
  // Two bursts, each sent in one write. Most of the first comes with the header's read, the rest
  // in 512-byte socket reads (a paced stream needs no more); having seen a backend ahead of it,
  // the exchange reads as much as the caller's buffer takes, so the second burst's twenty chunks
  // come out of one read_some, not twenty.
  std::string first_body, second_body;
  std::string first = head + chunks(0, 40, first_body);
  std::string second = chunks(40, 60, second_body) + "0\r\n\r\n";
  REQUIRE(first_body.size() > 3 * 512);
  auto r = relay({first, second}, 4096);
  REQUIRE_FALSE(r.ec);
  REQUIRE(joined(r.reads) == first_body + second_body);
  REQUIRE(r.reads.back() == second_body);
  // The first burst: one read_some per socket read, each holding many chunks.
  REQUIRE(r.reads.size() <= 6);
}

TEST_CASE("upstream_exchange::read_some fills the buffer across chunks, then goes on") {
  std::string body;
  std::string wire = chunked_events(40, body);
  auto r = relay({wire}, 100);
  REQUIRE_FALSE(r.ec);
  REQUIRE(joined(r.reads) == body);
  // Reads span chunks (one chunk per read would be 40 of them).
  REQUIRE(r.reads.size() < 40);
}

TEST_CASE("upstream_exchange::read_some frames chunks however the reads cut them") {
  std::string body;
  std::string wire = chunked_events(5, body);
  const std::size_t head = wire.find("\r\n\r\n") + 4;
  // Cut inside a chunk-size line, inside a chunk's data, between a chunk's data and its CRLF.
  for (std::size_t cut : {head + 1, head + 10, head + 4 + 30, wire.size() - 6, wire.size() - 2}) {
    auto r = relay({wire.substr(0, cut), wire.substr(cut)}, 4096);
    REQUIRE_FALSE(r.ec);
    REQUIRE(joined(r.reads) == body);
  }
}

TEST_CASE("upstream_exchange::read_some fails a chunk-size line that fills its buffer") {
  // A chunk extension that never ends: no HTTP a decoder sends, and it must end the read with an
  // error (not an exception, not an ever-growing buffer).
  std::string body;
  std::string wire = head + chunks(0, 1, body) + "5;" + std::string(20000, 'x');
  auto r = relay({wire}, 4096);
  REQUIRE(r.ec);
  REQUIRE(joined(r.reads) == body);
}
