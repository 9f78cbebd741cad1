#include "proxy/front/http_session.hpp"

#include <spdlog/spdlog.h>

#include <array>

#include "protocol/request_id.hpp"
#include "proxy/core/json_response.hpp"
#include "proxy/front/admission.hpp"
#include "proxy/front/decoder_peers.hpp"
#include "proxy/front/request_reader.hpp"
#include "proxy/logging.hpp"
#include "proxy/ops/admin_endpoints.hpp"
#include "proxy/pd/metaserver_endpoint.hpp"
#include "proxy/pd/pd_request.hpp"

namespace glm::proxy {
namespace {

std::optional<answer> refusal_of(access_policy::verdict verdict, bool keep_alive) {
  if (verdict == access_policy::verdict::allowed) return std::nullopt;
  if (verdict == access_policy::verdict::unauthorized) {
    // The message never says which part was wrong, nor echoes what was sent.
    answer a = answer::refusal(401, "missing or invalid bearer token in the Authorization header",
                               refusal_reason::unauthorized, keep_alive);
    a.response.set(http::field::www_authenticate, "Bearer");
    return a;
  }
  return answer::refusal(403,
                         "this endpoint answers loopback clients only; start glm-proxy with "
                         "--admin-token to use it remotely",
                         refusal_reason::forbidden, keep_alive);
}

}  // namespace

http_session::http_session(proxy_context& ctx, tcp::socket socket, connection_gate::ticket place,
                           connection_gate& answering)
    : ctx_(ctx),
      place_(std::move(place)),
      answering_(answering),
      policy_(ctx.cfg.api_key, ctx.cfg.admin_token),
      stream_(std::move(socket)) {}

net::awaitable<void> http_session::run() {
  ctx_.stats.connection_opened();
  struct count_close {
    metrics& m;
    ~count_close() { m.connection_closed(); }
  } closing{ctx_.stats};
  error_code ignored;
  stream_.socket().set_option(tcp::no_delay(true), ignored);
  if (auto peer = stream_.socket().remote_endpoint(ignored); !ignored) {
    auto addr = peer.address();
    peer_address_ = addr;
    peer_ = (addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string()) + ":" +
            std::to_string(peer.port());
  }
  request_reader reader(ctx_.cfg, stream_);
  for (bool first = true;; first = false) {
    read_result got = co_await reader.read(first);
    if (got.what == read_result::kind::closed) break;
    auto answering = answering_.try_enter();  // no limit: always a place
    const auto started = std::chrono::steady_clock::now();
    access_record record = start_record(got.request, got.has_header);
    const bool head = got.has_header && got.request.method() == http::verb::head;
    const bool served = got.what == read_result::kind::request;
    // Requests refused while being read count as "invalid": their paths may be anything.
    const endpoint label = served ? endpoint_of(record.endpoint) : endpoint::invalid;
    // Not a conditional expression: g++ 12 miscompiles a co_await that a ?: or && may skip.
    answer a;
    if (served) {
      a = co_await handle(got.request, record);
    } else {
      a = std::move(got.refusal);
    }
    if (!co_await finish(std::move(a), record, label, head, started)) break;
  }
  co_await linger();
}

access_record http_session::start_record(const http::request<http::string_body>& req,
                                         bool has_header) const {
  access_record record;
  record.client = peer_;
  // The client's id, when it is safe to put in headers and logs, lets it follow its request
  // through both backends' logs; otherwise a fresh one.
  if (auto it = req.find("X-Request-Id");
      has_header && it != req.end() && protocol::is_sane_request_id(it->value())) {
    record.id = it->value();
  } else {
    record.id = protocol::make_request_id();
  }
  if (has_header) {
    record.method = req.method_string();
    std::string_view target = req.target();
    record.endpoint = target.substr(0, target.find('?'));
    record.prompt_bytes = req.body().size();
  }
  return record;
}

net::awaitable<answer> http_session::handle(http::request<http::string_body>& req,
                                            access_record& record) {
  const bool keep_alive = req.keep_alive();
  const route* r = route_table::find(record.endpoint);
  if (r == nullptr) co_return route_table::not_found(record.endpoint, keep_alive);
  if (!route_table::accepts(*r, req.method())) {
    co_return route_table::method_not_allowed(*r, keep_alive);
  }
  if (auto refused = check_access(*r, req)) co_return std::move(*refused);
  if (r->access == access_rule::decoders) {
    const bool admitted = co_await decoder_peers::admits(ctx_.lb, peer_address_);
    if (!admitted) {
      co_return answer::refusal(403, "this endpoint answers the proxy's decoders and loopback only",
                                refusal_reason::forbidden, keep_alive);
    }
  }
  // Held until the answer has ended, however it ends.
  inflight_gate::slot place;
  if (r->limited && ctx_.inflight.limit() != 0) {
    auto admitted = co_await admission::admit(ctx_, stream_.socket(), keep_alive, record);
    if (!admitted.place) co_return std::move(admitted.refusal);
    place = std::move(admitted.place);
  }
  co_return co_await invoke(*r, req, record);
}

std::optional<answer> http_session::check_access(const route& r,
                                                 const http::request<http::string_body>& req) {
  auto authorization = req[http::field::authorization];
  switch (r.access) {
    case access_rule::open:
    case access_rule::decoders:  // by address, in handle(): a host name may need resolving
      return std::nullopt;
    case access_rule::inference:
      return refusal_of(policy_.inference(authorization), req.keep_alive());
    case access_rule::admin:
      return refusal_of(policy_.admin(authorization, peer_address_), req.keep_alive());
  }
  return std::nullopt;
}

net::awaitable<answer> http_session::invoke(const route& r, http::request<http::string_body>& req,
                                            access_record& record) {
  const bool keep_alive = req.keep_alive();
  admin_endpoints admin(ctx_);
  switch (r.id) {
    case endpoint::completions:
    case endpoint::chat_completions: {
      pd_request pd(ctx_, stream_, req, record.endpoint, record);
      co_return co_await pd.run();
    }
    case endpoint::healthcheck:
      co_return answer::reply(admin.healthcheck(keep_alive));
    case endpoint::metrics:
      co_return answer::reply(admin.metrics(keep_alive));
    case endpoint::models:
      co_return answer::reply(co_await admin.models(keep_alive));
    case endpoint::reset_prefix_cache:
      co_return answer::reply(co_await admin.reset_prefix_cache(req.target(), keep_alive));
    case endpoint::instances_add:
    case endpoint::instances_remove: {
      answer a = answer::reply(r.id == endpoint::instances_add
                                   ? admin.add_instances(req.body(), keep_alive)
                                   : admin.remove_instances(req.body(), keep_alive));
      // A body that names no instances is refused before anything changes.
      if (a.response.result_int() == 400) a.refused = refusal_reason::invalid_body;
      co_return a;
    }
    case endpoint::metaserver: {
      answer a = answer::reply(co_await metaserver_endpoint::serve(ctx_, req));
      if (a.response.result_int() == 400) a.refused = refusal_reason::invalid_body;
      co_return a;
    }
    case endpoint::other:
    case endpoint::invalid:
      break;
  }
  co_return route_table::not_found(record.endpoint, keep_alive);
}

net::awaitable<bool> http_session::finish(answer a, access_record& record, endpoint label,
                                          bool head,
                                          std::chrono::steady_clock::time_point started) {
  // A refusal is counted when it is decided, before its answer goes out: a client (a health
  // checker, a test) that has read a 401 or a 503 finds it in /metrics.
  if (a.refused) {
    ctx_.stats.refused(*a.refused);
    record.end(ending_of(*a.refused));
  }
  if (!a.written) {
    a.response.set("X-Request-Id", record.id);
    a.status = a.response.result_int();
    bool written = co_await write(a.response, head);
    a.keep_connection = written && a.response.keep_alive();
  }
  const double duration =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ctx_.stats.request_done(label, a.status, duration);
  if (label == endpoint::metaserver) ctx_.stats.metaserver_request(a.status);
  record.status = a.status;
  record.duration_seconds = duration;
  log_access(record);
  co_return a.keep_connection;
}

net::awaitable<bool> http_session::write(http::response<http::string_body>& res, bool head) {
  stream_.expires_after(seconds(ctx_.cfg.client_write_timeout));
  if (head) {
    // An answer to HEAD has no body (RFC 9110 9.3.2); one sent anyway would be read as the start
    // of the next response on a keep-alive connection. Its Content-Length is the GET's.
    http::response_serializer<http::string_body> sr(res);
    auto [ec, n] = co_await http::async_write_header(stream_, sr, use_nothrow);
    co_return !ec;
  }
  auto [ec, n] = co_await http::async_write(stream_, res, use_nothrow);
  co_return !ec;
}

net::awaitable<void> http_session::linger() {
  // Close like nginx's lingering_close: stop sending, then drain what the client still sends for a
  // moment, so an error answered before the body was read (413) is not lost to a TCP reset.
  error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  std::array<char, 4096> scratch;
  std::size_t drained = 0;
  while (!ec && drained < ctx_.cfg.max_body_bytes && std::chrono::steady_clock::now() < deadline) {
    stream_.expires_at(deadline);
    std::size_t n;
    std::tie(ec, n) = co_await stream_.async_read_some(net::buffer(scratch), use_nothrow);
    drained += n;
  }
  stream_.close();
}

}  // namespace glm::proxy
