#include "proxy/front/route_table.hpp"

#include <array>
#include <string>

namespace glm::proxy {
namespace {

constexpr std::array routes{
    route{endpoint::completions, http::verb::post, access_rule::inference, true},
    route{endpoint::chat_completions, http::verb::post, access_rule::inference, true},
    route{endpoint::healthcheck, http::verb::get, access_rule::open, false},
    route{endpoint::metrics, http::verb::get, access_rule::open, false},
    route{endpoint::models, http::verb::get, access_rule::inference, false},
    route{endpoint::reset_prefix_cache, http::verb::post, access_rule::admin, false},
    route{endpoint::instances_add, http::verb::post, access_rule::admin, false},
    route{endpoint::instances_remove, http::verb::post, access_rule::admin, false},
    route{endpoint::metaserver, http::verb::post, access_rule::decoders, false},
};

}  // namespace

const route* route_table::find(std::string_view path) {
  for (const route& r : routes) {
    if (to_string(r.id) == path) return &r;
  }
  return nullptr;
}

bool route_table::accepts(const route& r, http::verb method) {
  return method == r.method || (r.method == http::verb::get && method == http::verb::head);
}

answer route_table::method_not_allowed(const route& r, bool keep_alive) {
  const bool get = r.method == http::verb::get;
  answer a =
      answer::refusal(405, get ? "method not allowed; use GET" : "method not allowed; use POST",
                      refusal_reason::method_not_allowed, keep_alive);
  a.response.set(http::field::allow, get ? "GET, HEAD" : "POST");
  return a;
}

answer route_table::not_found(std::string_view path, bool keep_alive) {
  return answer::refusal(404, "no such endpoint: " + std::string(path), refusal_reason::not_found,
                         keep_alive);
}

}  // namespace glm::proxy
