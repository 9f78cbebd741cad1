#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "proxy/core/request_ending.hpp"

namespace glm::proxy {

// What one client request did, filled in while it is served and written as one access log line
// when it ends (see log_access): the session writes it for every answer it gives, so no answer
// goes unlogged. Endpoint handlers fill what applies to them; the rest stays empty.
struct access_record {
  std::string id;  // the request id (the client's X-Request-Id when sane); empty if none was made
  std::string client;            // peer address
  std::string_view method;       // valid while the request is
  std::string endpoint;          // path without the query
  unsigned status = 0;           // HTTP status sent (200 for a stream ended by an error event)
  std::string prefiller;         // last prefiller tried
  std::string decoder;           // last decoder tried
  std::size_t prompt_bytes = 0;  // the client's body length
  std::optional<double> ttft_seconds;  // streams: arrival to first decode byte written
  double duration_seconds = 0;
  std::uint64_t events = 0;          // SSE events relayed
  std::string_view prefill_route;    // why the last prefiller was chosen (balancer::route_reason)
  std::string_view decode_route;     // why the last decoder was chosen
  std::size_t predicted_tokens = 0;  // cache_aware: prompt tokens predicted cached on the prefiller
  std::string_view ending = "done";  // to_string(request_ending): see end()

  void end(request_ending how) { ending = to_string(how); }
};

}  // namespace glm::proxy
