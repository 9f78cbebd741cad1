"""The request-path promises of issue #16, end to end: drain expiry ends streams cleanly, HEAD is
answered wherever GET is, every answer carries a request id (access line and X-Request-Id), a
queue timeout ends as `timeout`, a prefill answer that does not parse is an upstream error like
any other, a departed client is counted once, an ejection is logged before the refusals it
causes, and a prefill answer without kv_transfer_params is served, counted and warned about once.

Run by hand: cd tests/e2e && python3 -m unittest -v test_request_path
"""

import json
import signal
import socket
import unittest

from fault_case import COMPLETIONS, NO_EJECTION, FaultCase, completion
from faults_common import RawConnection, check_stream, http_request, post, wait_no_load
from harness import closed_port, mock_stats, request, wait_until
from test_metrics import scrape


def access_lines(proxy):
    """The JSON access lines of a proxy started with --log-format json."""
    out = []
    for line in proxy.read_log().splitlines():
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if o.get("type") == "access":
            out.append(o)
    return out


def log_messages(proxy):
    out = []
    for line in proxy.read_log().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


class DrainTests(FaultCase):
    auto_cluster = False

    def test_drain_expiry_ends_each_stream_with_an_error_event(self):
        c = self.start_cluster(prefillers=1, decoders=1, decode_args=("--token-interval-ms", "50"),
                               proxy_args=("--drain-timeout", "0.5", "--log-format", "json"))
        conns = []
        for i in range(3):
            conn = RawConnection(c.port)
            conn.send(http_request("POST", COMPLETIONS, completion(1000, True, prompt=f"d{i}"),
                                   headers={"X-Request-Id": f"drain-{i}"}))
            self.assertTrue(conn.read_until(b"tok1"), conn.buf[:300])
            conns.append(conn)
        c.proxy.proc.send_signal(signal.SIGTERM)
        for conn in conns:
            res = conn.read_response()
            conn.close()
            self.assertIsNotNone(res, "the stream was cut without an answer's end")
            self.assertEqual(res.status, 200)
            self.assertEqual(res.framing, "chunked")  # the last chunk came: a properly ended body
            kind, _, message = check_stream(res.body)
            self.assertEqual(kind, "error", res.body[-300:])
            self.assertIn("drain", message)
        self.assertEqual(c.proxy.proc.wait(15), 0)
        lines = {a["request_id"]: a for a in access_lines(c.proxy)}
        for i in range(3):
            self.assertEqual(lines[f"drain-{i}"]["ending"], "drain_timeout", lines)
            self.assertEqual(lines[f"drain-{i}"]["status"], 200)


class AnswerTests(FaultCase):
    prefillers = 1
    decoders = 1
    proxy_args = ("--log-format", "json", "--max-retries", "3", "--retry-delay", "0.01",
                  "--api-key", "sk-test") + NO_EJECTION
    auth = {"Authorization": "Bearer sk-test"}

    def test_head_is_answered_wherever_get_is(self):
        for path in ("/healthcheck", "/metrics", "/v1/models"):
            with self.subTest(path=path):
                status, headers, body = request(self.port, "HEAD", path, headers=self.auth)
                self.assertEqual(status, 200, headers)
                self.assertEqual(body, b"")
                self.assertIn("x-request-id", headers)
                self.assertGreater(int(headers["content-length"]), 0)

    def test_every_answer_has_a_request_id(self):
        calls = [("GET", "/healthcheck", None, {}), ("GET", "/metrics", None, {}),
                 ("GET", "/v1/models", None, self.auth), ("GET", "/nothing", None, {}),
                 ("POST", "/healthcheck", b"{}", {}), ("GET", "/v1/models", None, {}),
                 ("POST", "/instances/add", b"{}", {}),
                 ("POST", "/instances/remove",
                  b'{"type":"decode","instances":"127.0.0.1:1"}', {}),
                 ("POST", COMPLETIONS, b"{not json", self.auth),
                 ("POST", COMPLETIONS, json.dumps(completion(2, False)).encode(), self.auth)]
        ids = []
        for i, (method, path, body, headers) in enumerate(calls):
            rid = f"rid-{i}"
            status, got, _ = request(self.port, method, path, body=body,
                                     headers=dict(headers, **{"X-Request-Id": rid}))
            self.assertEqual(got.get("x-request-id"), rid, (method, path, status))
            ids.append(rid)
        # A request with no usable id gets a fresh one, in the header and in its access line.
        status, got, _ = request(self.port, "GET", "/nothing")
        fresh = got.get("x-request-id")
        self.assertTrue(fresh)
        ids.append(fresh)
        lines = wait_until(lambda: len(access_lines(self.cluster.proxy)) >= len(ids) and
                           access_lines(self.cluster.proxy), message="access lines")
        by_id = {a["request_id"]: a for a in lines}
        for rid in ids:
            self.assertIn(rid, by_id, lines)
        self.assertEqual(by_id["rid-8"]["ending"], "rejected")
        self.assertEqual(by_id["rid-5"]["status"], 401)
        self.assertEqual(by_id["rid-9"]["prompt_bytes"], len(json.dumps(completion(2, False))))

    def test_refused_http_gets_an_access_line_with_an_id(self):
        with RawConnection(self.port) as conn:
            conn.send(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Request-Id: te-1\r\n"
                      b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
            res = conn.read_response()
        self.assertEqual(res.status, 501)
        self.assertEqual(res.headers.get("x-request-id"), "te-1")
        with RawConnection(self.port) as conn:
            conn.send(b"\x16\x03\x01 not http at all\r\n\r\n")
            res = conn.read_response()
        self.assertEqual(res.status, 400)
        self.assertTrue(res.headers.get("x-request-id"))
        refused = lambda: [a for a in access_lines(self.cluster.proxy)  # noqa: E731
                           if a["status"] in (400, 501)]
        lines = wait_until(lambda: len(refused()) >= 2 and refused(), message="access lines")
        ids = {a["request_id"] for a in lines}
        self.assertIn("te-1", ids)
        self.assertIn(res.headers["x-request-id"], ids)
        m = scrape(self.port)
        self.assertEqual(m.value("glm_proxy_refusals_total", reason="not_implemented"), 1)
        self.assertEqual(m.value("glm_proxy_refusals_total", reason="malformed"), 1)

    def test_a_decoder_400_is_not_a_failed_attempt(self):
        code, _, body = request(self.port, "POST", COMPLETIONS,
                                body=json.dumps(completion(2, False, "decode_error")).encode(),
                                headers=dict(self.auth, **{"X-Request-Id": "dec-400"}))
        self.assertEqual(code, 400, body)
        wait_until(lambda: any(a["request_id"] == "dec-400"
                               for a in access_lines(self.cluster.proxy)), message="access line")
        about = [o for o in log_messages(self.cluster.proxy)
                 if o.get("request_id") == "dec-400" and o.get("type") != "access"]
        self.assertTrue(about)
        for o in about:
            self.assertNotIn("attempt", o["msg"], about)
            self.assertNotEqual(o["level"], "warning", about)

    def test_a_prefill_answer_that_does_not_parse_is_an_upstream_error(self):
        c = self.start_cluster(prefillers=2, decoders=1,
                               proxy_args=("--max-retries", "2", "--retry-delay", "0.01")
                               + NO_EJECTION)
        code, headers, body = post(c.port, COMPLETIONS, completion(2, False, "prefill_bad_json"))
        self.assertEqual(code, 502, body)
        # Retried on the other prefiller; counted once per attempt.
        self.assertEqual([mock_stats(p.port)["prefill"] for p in c.prefillers], [1, 1])
        m = scrape(c.port)
        self.assertEqual(m.total("glm_proxy_upstream_errors_total", role="prefill",
                                 kind="bad_answer"), 2, m.text)
        self.assertEqual(m.value("glm_proxy_retries_total", role="prefill"), 1, m.text)
        self.assertEqual(mock_stats(c.decoders[0].port)["requests"], 0)
        wait_no_load(c.port)

    def test_a_prefill_answer_without_kv_is_served_counted_and_warned_once(self):
        for i in range(3):
            code, _, body = request(self.port, "POST", COMPLETIONS,
                                    body=json.dumps(completion(2, i % 2 == 0,
                                                               "prefill_no_kv")).encode(),
                                    headers=self.auth)
            self.assertEqual(code, 200, body)
        backend = f"127.0.0.1:{self.cluster.prefill_ports[0]}"
        m = scrape(self.port)
        self.assertEqual(m.value("glm_proxy_prefill_without_kv_total", backend=backend), 3, m.text)
        warnings = [o for o in log_messages(self.cluster.proxy)
                    if o.get("level") == "warning" and "kv_transfer_params" in o.get("msg", "")]
        self.assertEqual(len(warnings), 1, warnings)


class LimitTests(FaultCase):
    auto_cluster = False

    def test_a_queue_timeout_ends_as_timeout(self):
        c = self.start_cluster(prefillers=1, decoders=1, decode_args=("--token-interval-ms", "100"),
                               proxy_args=("--max-inflight", "1", "--queue-timeout", "0.3",
                                           "--log-format", "json"))
        holder = RawConnection(c.port)
        self.addCleanup(holder.close)
        holder.send(http_request("POST", COMPLETIONS, completion(50, True)))
        self.assertTrue(holder.read_until(b"tok0"))
        code, headers, body = request(c.port, "POST", COMPLETIONS,
                                      body=json.dumps(completion(2, False)).encode(),
                                      headers={"X-Request-Id": "queued-1"})
        self.assertEqual(code, 503, body)
        self.assertEqual(headers.get("x-request-id"), "queued-1")
        line = wait_until(lambda: next((a for a in access_lines(c.proxy)
                                        if a["request_id"] == "queued-1"), None),
                          message="access line")
        self.assertEqual(line["ending"], "timeout")
        self.assertEqual(scrape(c.port).value("glm_proxy_refusals_total",
                                              reason="queue_timeout"), 1)

    def test_a_client_dropped_by_the_write_timeout_is_counted_once(self):
        c = self.start_cluster(prefillers=1, decoders=1, decode_args=("--token-interval-ms", "0"),
                               proxy_args=("--client-write-timeout", "1") + NO_EJECTION)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", c.port))
        sock.sendall(http_request("POST", COMPLETIONS, completion(1_000_000, True)))
        head = b""
        while b"tok0" not in head:
            data = sock.recv(4096)
            self.assertTrue(data)
            head += data
        wait_until(lambda: mock_stats(c.decoders[0].port)["client_disconnects"] == 1, 30,
                   message="the stalled client's stream was not dropped")
        wait_no_load(c.port)
        self.assertEqual(scrape(c.port).value("glm_proxy_client_disconnects_total"), 1)


class EjectionLogTests(FaultCase):
    auto_cluster = False

    def test_the_ejection_is_logged_before_the_refusals_it_causes(self):
        d = self.start_mock(name="decode")
        p = self.start_processes([closed_port()], [d.port],
                                 ("--max-retries", "3", "--retry-delay", "0.01", "--eject-after",
                                  "3", "--log-format", "json"))
        # One request's three failed attempts on the lone prefiller eject it (each attempt
        # counts); the next request is refused at once.
        code, _, body = request(p.port, "POST", COMPLETIONS,
                                body=json.dumps(completion(2, False)).encode(),
                                headers={"X-Request-Id": "eject-1"})
        self.assertEqual(code, 502, body)
        code, _, body = request(p.port, "POST", COMPLETIONS,
                                body=json.dumps(completion(2, False)).encode(),
                                headers={"X-Request-Id": "eject-2"})
        self.assertEqual(code, 503, body)
        # The access line is written after the answer is sent: wait for it, then compare order.
        wait_until(lambda: any(o.get("type") == "access" and o.get("request_id") == "eject-2"
                               for o in log_messages(p)), 10,
                   message="no access line for the refused request")
        objects = log_messages(p)
        ejected = next(i for i, o in enumerate(objects) if "ejected" in o.get("msg", ""))
        self.assertEqual(objects[ejected]["level"], "warning")
        refused = next(i for i, o in enumerate(objects)
                       if o.get("type") == "access" and o["request_id"] == "eject-2")
        self.assertLess(ejected, refused, objects)


if __name__ == "__main__":
    unittest.main()
