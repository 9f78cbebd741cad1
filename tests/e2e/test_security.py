"""Client-facing security: --api-key (or GLM_PROXY_API_KEY) on the inference endpoints,
--admin-token on the operations endpoints (loopback only without one), and the client's own
Authorization header never reaching a backend.

The "remote client" cases bind a second proxy on 0.0.0.0 (or ::) and connect from this machine's
own non-loopback address (from `hostname -I`); without one, those cases are skipped.

Run by hand: cd tests/e2e && python3 -m unittest -v test_security
"""

import http.client
import ipaddress
import json
import shutil
import socket
import subprocess
import unittest

import harness
from harness import (GLM_PROXY_BIN, HTTP_TIMEOUT, ClusterTestCase, Process, clean_env, get,
                     ipv6_loopback_available, mock_requests, request, stream)
from test_metrics import scrape

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"
MODELS = "/v1/models"
API_KEY = "sk-client-4f1e9a"
ADMIN_TOKEN = "adm-7c2d55"
BACKEND_KEY = "sk-backend-e2e"

COMPLETION_BODY = {"prompt": "x", "max_tokens": 2}
CHAT_BODY = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 2}

def wrong_authorizations(t):
    """Authorization values (None: no header) that must not pass for a configured token t."""
    return [None, "", f"Bearer {t}x", f"Bearer {t[:-1]}", f"Bearer {t.upper()}", t,
            f"Basic {t}", f"Bearer{t}", "Bearer ", f"Token {t}"]


def bearer(t):
    return {"Authorization": f"Bearer {t}"}


def headers_for(authorization):
    return {} if authorization is None else {"Authorization": authorization}


def non_loopback_ipv4():
    """An IPv4 address of this machine that is not loopback and can be bound, or None."""
    candidates = []
    exe = shutil.which("hostname")
    if exe:
        try:
            out = subprocess.run([exe, "-I"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 timeout=10).stdout.decode()
            candidates += out.split()
        except (OSError, subprocess.SubprocessError):
            pass
    for c in candidates:
        try:
            a = ipaddress.ip_address(c)
        except ValueError:
            continue
        if a.version != 4 or a.is_loopback or a.is_link_local:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((c, 0))
            return c
        except OSError:
            continue
        finally:
            s.close()
    return None


def request_from(source, host, port, method, path, body=None, headers=None):
    """One request from local address `source` -> (status, headers, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=HTTP_TIMEOUT,
                                      source_address=(source, 0))
    try:
        data = json.dumps(body).encode() if body is not None else None
        h = {"Content-Type": "application/json"} if data is not None else {}
        h.update(headers or {})
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


class SecurityCase(ClusterTestCase):
    prefillers = 1
    decoders = 1

    def call(self, method, path, body=None, headers=None):
        return request(self.port, method, path, body, headers)

    def assert_401(self, status, headers, body):
        self.assertEqual(status, 401, body)
        self.assertEqual(headers.get("www-authenticate"), "Bearer", headers)
        error = json.loads(body)["error"]
        self.assertEqual(error["type"], "AuthenticationError", error)
        self.assertEqual(error["code"], 401, error)
        for secret in (API_KEY, ADMIN_TOKEN):
            self.assertNotIn(secret.encode(), body)

    def assert_403(self, status, headers, body):
        self.assertEqual(status, 403, body)
        error = json.loads(body)["error"]
        self.assertEqual(error["type"], "PermissionDeniedError", error)
        self.assertEqual(error["code"], 403, error)

    def refusals(self, reason, port=None):
        return scrape(self.port if port is None else port).value("glm_proxy_refusals_total",
                                                                 reason=reason)

    def backend_records(self):
        return [r for p in self.cluster.mocks for r in mock_requests(p.port)]

    # The operations endpoints, each with a body its handler accepts and the status it answers
    # once allowed through.
    def admin_calls(self):
        unused = f"127.0.0.1:{harness.closed_port()}"
        return [
            ("/instances/add", {"type": "decode", "instances": [unused]}, 200),
            ("/instances/remove", {"type": "decode", "instances": ["127.0.0.1:1"]}, 404),
            ("/reset_prefix_cache", None, 200),
        ]


# --------------------------------------------------------------------------------------------
# --api-key


class ApiKeyTests(SecurityCase):
    proxy_args = ("--api-key", API_KEY)

    def test_missing_or_wrong_key_is_refused_on_each_inference_endpoint(self):
        refused = 0
        for method, path, body in (("POST", COMPLETIONS, COMPLETION_BODY),
                                   ("POST", CHAT, CHAT_BODY), ("GET", MODELS, None)):
            for authorization in wrong_authorizations(API_KEY):
                with self.subTest(path=path, authorization=authorization):
                    self.assert_401(*self.call(method, path, body, headers_for(authorization)))
                    refused += 1
        # Nothing reached a backend.
        self.assertEqual(self.backend_records(), [])
        self.assertEqual(self.refusals("unauthorized"), refused)

    def test_the_right_key_is_served(self):
        status, _, body = self.call("POST", COMPLETIONS, COMPLETION_BODY, bearer(API_KEY))
        self.assertEqual(status, 200, body)
        status, _, body = self.call("POST", CHAT, CHAT_BODY,
                                    {"Authorization": f"bearer   {API_KEY}"})
        self.assertEqual(status, 200, body)
        status, _, events = stream(self.port, COMPLETIONS,
                                   {"prompt": "x", "max_tokens": 2, "stream": True},
                                   headers=bearer(API_KEY))
        self.assertEqual((status, events[-1]), (200, "[DONE]"))
        status, _, body = self.call("GET", MODELS, None, bearer(API_KEY))
        self.assertEqual(status, 200, body)
        self.assertEqual(self.refusals("unauthorized"), 0)

    def test_health_and_metrics_stay_open(self):
        self.assertEqual(get(self.port, "/healthcheck")[0], 200)
        self.assertEqual(get(self.port, "/metrics")[0], 200)

    def test_the_api_key_does_not_guard_the_operations_endpoints(self):
        # Without --admin-token they answer loopback clients, with or without the API key.
        for path, body, expected in self.admin_calls():
            with self.subTest(path=path):
                status, _, payload = self.call("POST", path, body)
                self.assertEqual(status, expected, payload)

    def test_the_clients_authorization_is_not_forwarded(self):
        status, _, body = self.call("POST", COMPLETIONS, COMPLETION_BODY, bearer(API_KEY))
        self.assertEqual(status, 200, body)
        records = [r for r in self.backend_records() if r["target"] == COMPLETIONS]
        self.assertEqual(len(records), 2, records)  # the prefill and the decode
        for r in records:
            self.assertNotIn("authorization", r["headers"], r["headers"])


class ApiKeyFromEnvironmentTests(SecurityCase):
    # The key from GLM_PROXY_API_KEY; the backends get OPENAI_API_KEY, never the client's key.
    proxy_env = {"GLM_PROXY_API_KEY": API_KEY, "OPENAI_API_KEY": BACKEND_KEY}

    def test_key_from_the_environment_and_backend_key_replaces_the_clients(self):
        self.assert_401(*self.call("POST", COMPLETIONS, COMPLETION_BODY))
        self.assert_401(*self.call("POST", COMPLETIONS, COMPLETION_BODY, bearer("nope")))
        status, _, body = self.call("POST", COMPLETIONS, COMPLETION_BODY, bearer(API_KEY))
        self.assertEqual(status, 200, body)
        records = [r for r in self.backend_records() if r["target"] == COMPLETIONS]
        self.assertEqual(len(records), 2, records)
        for r in records:
            self.assertEqual(r["headers"].get("authorization"), f"Bearer {BACKEND_KEY}",
                             r["headers"])


class NoKeyTests(SecurityCase):
    def test_without_a_key_everything_is_open_and_a_client_header_is_dropped(self):
        status, _, body = self.call("POST", COMPLETIONS, COMPLETION_BODY,
                                    bearer("whatever-the-client-sends"))
        self.assertEqual(status, 200, body)
        self.assertEqual(self.call("GET", MODELS)[0], 200)
        records = [r for r in self.backend_records() if r["target"] == COMPLETIONS]
        self.assertEqual(len(records), 2, records)
        for r in records:
            self.assertNotIn("authorization", r["headers"], r["headers"])


# --------------------------------------------------------------------------------------------
# --admin-token


class AdminTokenTests(SecurityCase):
    proxy_args = ("--admin-token", ADMIN_TOKEN)

    def test_each_operations_endpoint_wants_the_token(self):
        refused = 0
        for path, body, expected in self.admin_calls():
            for authorization in wrong_authorizations(ADMIN_TOKEN):
                with self.subTest(path=path, authorization=authorization):
                    self.assert_401(*self.call("POST", path, body, headers_for(authorization)))
                    refused += 1
            with self.subTest(path=path, authorization="right"):
                status, _, payload = self.call("POST", path, body, bearer(ADMIN_TOKEN))
                self.assertEqual(status, expected, payload)
        self.assertEqual(self.refusals("unauthorized"), refused)
        self.assertEqual(self.refusals("forbidden"), 0)
        # The refused calls did nothing: only the allowed /reset_prefix_cache reached backends.
        resets = [r for r in self.backend_records() if r["target"] == "/reset_prefix_cache"]
        self.assertEqual(len(resets), 2, resets)

    def test_inference_is_not_behind_the_admin_token(self):
        status, _, body = self.call("POST", COMPLETIONS, COMPLETION_BODY)
        self.assertEqual(status, 200, body)


class BothTokensTests(SecurityCase):
    proxy_args = ("--api-key", API_KEY, "--admin-token", ADMIN_TOKEN)

    def test_each_token_opens_only_its_own_endpoints(self):
        self.assert_401(*self.call("POST", COMPLETIONS, COMPLETION_BODY, bearer(ADMIN_TOKEN)))
        self.assert_401(*self.call("POST", "/reset_prefix_cache", None, bearer(API_KEY)))
        self.assertEqual(self.call("POST", COMPLETIONS, COMPLETION_BODY, bearer(API_KEY))[0], 200)
        self.assertEqual(self.call("POST", "/reset_prefix_cache", None, bearer(ADMIN_TOKEN))[0],
                         200)
        self.assertEqual(self.refusals("unauthorized"), 2)


# --------------------------------------------------------------------------------------------
# No admin token: loopback only


class LoopbackOnlyTests(SecurityCase):
    """A second proxy, bound on a wildcard address, in front of the same mocks."""

    def start_wildcard_proxy(self, host):
        argv = [GLM_PROXY_BIN, "--host", host, "--port", "0",
                "--prefill", f"127.0.0.1:{self.cluster.prefill_ports[0]}",
                "--decode", f"127.0.0.1:{self.cluster.decode_ports[0]}"]
        p = Process("glm-proxy-wildcard", argv, env=clean_env())
        self.addCleanup(p.close_log)
        self.addCleanup(p.stop)
        p.wait_listening()
        return p.port

    def check_remote_is_forbidden(self, source, host, port):
        for path, body, _ in self.admin_calls():
            with self.subTest(path=path, source=source):
                self.assert_403(*request_from(source, host, port, "POST", path, body))
        # Even with a token-looking header: there is no token to match.
        self.assert_403(*request_from(source, host, port, "POST", "/reset_prefix_cache", None,
                                      bearer("anything")))
        # Probes, metrics and inference stay open to remote clients.
        self.assertEqual(request_from(source, host, port, "GET", "/healthcheck")[0], 200)
        self.assertEqual(request_from(source, host, port, "GET", "/metrics")[0], 200)
        status, _, body = request_from(source, host, port, "POST", COMPLETIONS, COMPLETION_BODY)
        self.assertEqual(status, 200, body)
        self.assertEqual(self.refusals("forbidden", port), 4)
        # Nothing was reset.
        resets = [r for r in self.backend_records() if r["target"] == "/reset_prefix_cache"]
        self.assertEqual(resets, [])

    def test_loopback_clients_are_served(self):
        for path, body, expected in self.admin_calls():
            with self.subTest(path=path):
                status, _, payload = self.call("POST", path, body)
                self.assertEqual(status, expected, payload)
        self.assertEqual(self.refusals("forbidden"), 0)

    def test_a_remote_client_is_forbidden(self):
        source = non_loopback_ipv4()
        if source is None:
            self.skipTest("this machine has no non-loopback IPv4 address to connect from")
        port = self.start_wildcard_proxy("0.0.0.0")
        self.check_remote_is_forbidden(source, source, port)
        # The same proxy still serves loopback clients.
        status, _, body = request_from("127.0.0.1", "127.0.0.1", port, "POST",
                                       "/reset_prefix_cache")
        self.assertEqual(status, 200, body)

    def test_dual_stack_listener_sees_mapped_addresses(self):
        # On "::", IPv4 clients show up as ::ffff:a.b.c.d: ::ffff:127.0.0.1 is loopback,
        # ::ffff:<our address> is not.
        source = non_loopback_ipv4()
        if source is None:
            self.skipTest("this machine has no non-loopback IPv4 address to connect from")
        if not ipv6_loopback_available():
            self.skipTest("no IPv6 on this machine")
        try:
            port = self.start_wildcard_proxy("::")
        except RuntimeError as e:
            self.skipTest(f"cannot listen on [::]: {e}")
        status, _, body = request_from("127.0.0.1", "127.0.0.1", port, "POST",
                                       "/reset_prefix_cache")
        self.assertEqual(status, 200, body)
        status, _, body = request_from("::1", "::1", port, "POST", "/reset_prefix_cache")
        self.assertEqual(status, 200, body)
        for r in self.cluster.mocks:
            harness.mock_reset(r.port)
        self.check_remote_is_forbidden(source, source, port)


if __name__ == "__main__":
    unittest.main()
