#pragma once

#include <chrono>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

namespace glm::mock {

// How one metaserver call of the layerwise decoder ended.
struct metaserver_answer {
  int status = 0;     // the HTTP status; 0 when no answer came
  std::string body;   // the answer's body (at most body_limit bytes are read)
  std::string error;  // why no answer came: "connect: ...", "timeout", ...; empty otherwise
  int attempts = 0;   // connections tried
  std::chrono::system_clock::time_point sent_at;      // first attempt
  std::chrono::system_clock::time_point answered_at;  // answer (or giving up)
};

// The HTTP POST the Mooncake layerwise connector makes to the proxy's metaserver: JSON, one
// connection per call, retried (three attempts in all, at once) only when no answer comes at all;
// a 4xx or 5xx answer counts as done, as the connector never looks at the status. Unlike the
// connector (no timeout), each attempt is bounded by `timeout`, so a test cannot hang.
class metaserver_client {
 public:
  static constexpr int max_attempts = 3;
  static constexpr std::size_t body_limit = 64 * 1024;

  // `url` is "http://HOST:PORT/PATH" (HOST may be "[v6]"); anything else is an error answer.
  static boost::asio::awaitable<metaserver_answer> post(std::string url, std::string body,
                                                        std::chrono::milliseconds timeout);
};

}  // namespace glm::mock
