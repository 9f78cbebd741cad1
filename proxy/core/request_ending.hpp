#pragma once

#include <string_view>

namespace glm::proxy {

// How a request ended: the access line's `ending` field.
enum class request_ending : unsigned char {
  done,            // answered completely (an error answer passed on from a backend included)
  client_gone,     // the client left, or stopped reading, before its answer ended
  upstream_error,  // a backend failed, or answered something unusable
  timeout,         // a backend, or the wait for a --max-inflight slot, took too long
  rejected,        // answered with an error before any backend was asked
  no_instance,     // every instance of a role was ejected or removed
  drain_timeout,   // cut by the end of --drain-timeout after SIGTERM
};

constexpr std::string_view to_string(request_ending e) {
  switch (e) {
    case request_ending::done:
      return "done";
    case request_ending::client_gone:
      return "client_gone";
    case request_ending::upstream_error:
      return "upstream_error";
    case request_ending::timeout:
      return "timeout";
    case request_ending::rejected:
      return "rejected";
    case request_ending::no_instance:
      return "no_instance";
    case request_ending::drain_timeout:
      return "drain_timeout";
  }
  return "done";
}

}  // namespace glm::proxy
