#include "proxy/flag_checks.hpp"

#include <boost/asio/ip/address.hpp>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace glm::proxy::flag_checks {

namespace {

std::string shortest(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<long long>(v));
  std::ostringstream s;
  s << v;
  return s.str();
}

}  // namespace

// A number check for CLI11: finite (strtod takes "nan" and "inf", CLI11's Range lets NaN through)
// and within [lo, hi], lo itself excluded when `lo_open`. CLI11 prefixes the flag's name to the
// message. Validators run on the text before conversion, so "-5" for an unsigned flag is caught
// here rather than wrapped around.
CLI::Validator number_in(double lo, double hi, bool lo_open) {
  std::string range = lo_open ? "more than " + shortest(lo) + ", at most " + shortest(hi)
                              : "from " + shortest(lo) + " to " + shortest(hi);
  std::string desc = (lo_open ? "(" : "[") + shortest(lo) + ", " + shortest(hi) + "]";
  return CLI::Validator(
      [lo, hi, lo_open, range](std::string& text) -> std::string {
        const char* begin = text.c_str();
        char* end = nullptr;
        double v = std::strtod(begin, &end);
        if (text.empty() || end != begin + text.size() || !std::isfinite(v)) {
          return "'" + text + "' is not a number";
        }
        if (v < lo || v > hi || (lo_open && v == lo)) {
          return text + " is out of range: want a number " + range;
        }
        return {};
      },
      desc);
}

// Bearer tokens must be non-empty (an empty --api-key would silently turn the check off) and fit
// in a header: visible ASCII, no spaces.
CLI::Validator bearer_token() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (text.empty()) return "must not be empty";
        for (unsigned char c : text) {
          if (c <= 0x20 || c >= 0x7f) return "must be visible ASCII characters without spaces";
        }
        return {};
      },
      "");
}

// A URL decoders can POST to: http(s)://, visible ASCII without spaces (it goes into every
// decode request's JSON, escaped, and vLLM's connector opens it as it is).
CLI::Validator metaserver_url() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (text.rfind("http://", 0) != 0 && text.rfind("https://", 0) != 0) {
          return "must start with http:// or https://";
        }
        for (unsigned char c : text) {
          if (c <= 0x20 || c >= 0x7f) return "must be visible ASCII characters without spaces";
        }
        return {};
      },
      "");
}

// 0.0.0.0, ::, [::] and the like: an address to listen on, never one to call.
bool is_wildcard(std::string host) {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(host, ec);
  return !ec && address.is_unspecified();
}

CLI::Validator not_empty() {
  return CLI::Validator(
      [](std::string& text) -> std::string { return text.empty() ? "must not be empty" : ""; }, "");
}

}  // namespace glm::proxy::flag_checks
