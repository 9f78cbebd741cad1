"""Limits: --max-connections, --max-inflight with --queue-timeout, and the refusal counters.

A request that must hold its slot for as long as a test needs uses the mock's `decode_hang`
fault (one token, then nothing until the client leaves); the test ends it by closing the socket.
Nothing here asserts on time: states are polled through /metrics and /healthcheck with generous
deadlines, and the one short --queue-timeout only decides which answer a request gets.

Run by hand: cd tests/e2e && python3 -m unittest -v test_limits
"""

import concurrent.futures
import http.client
import json
import signal
import socket
import unittest

from harness import (ClusterTestCase, HTTP_TIMEOUT, get, healthcheck, mock_requests, open_raw,
                     post_json, raw_http_request, read_until, stream, wait_until)
from test_metrics import Metrics, scrape

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"
HANG = {"prompt": "x", "max_tokens": 4, "stream": True, "mock_fault": "decode_hang"}


def read_to_eof(sock, timeout=HTTP_TIMEOUT):
    """Everything the peer sends until it closes."""
    sock.settimeout(timeout)
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return buf
        buf += chunk


def read_one_response(sock, timeout=HTTP_TIMEOUT):
    """Reads one response with a Content-Length from sock -> (status, headers, body)."""
    data = read_until(sock, lambda b: b"\r\n\r\n" in b, timeout)
    _, headers, _ = parse_response(data)
    length = int(headers["content-length"])
    head_len = data.index(b"\r\n\r\n") + 4
    while len(data) < head_len + length:
        sock.settimeout(timeout)
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed inside the body; got {data!r}")
        data += chunk
    return parse_response(data)


def parse_response(data):
    """(status, {lowercase header: value}, body bytes) of one HTTP/1.1 response with a
    Content-Length."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body[:int(headers.get("content-length", len(body)))]


class LimitsCase(ClusterTestCase):
    prefillers = 1
    decoders = 1

    def scrape(self):
        return scrape(self.port)

    def wait_metric(self, predicate, message, timeout=20.0):
        last = {}

        def check():
            last["m"] = self.scrape()
            return predicate(last["m"])

        wait_until(check, timeout, message=message,
                   describe=lambda: last["m"].text if "m" in last else None)
        return last["m"]

    def refusals(self, m, reason):
        return m.value("glm_proxy_refusals_total", reason=reason)

    def hold_slot(self):
        """A streamed completion that holds its --max-inflight slot until the socket closes."""
        sock = open_raw(self.port, "POST", COMPLETIONS, HANG)
        self.addCleanup(sock.close)
        read_until(sock, lambda b: b"tok0" in b)
        return sock

    def assert_503_retry(self, status, headers, body):
        self.assertEqual(status, 503, body)
        self.assertEqual(headers.get("retry-after"), "1", headers)
        self.assertTrue(headers.get("content-type", "").startswith("application/json"), headers)
        error = json.loads(body)["error"]
        self.assertEqual(error["type"], "ServiceUnavailableError", error)
        self.assertEqual(error["code"], 503, error)
        return error

    def completion_ok(self, **extra):
        body = {"prompt": "x", "max_tokens": 2}
        body.update(extra)
        status, _, payload = post_json(self.port, COMPLETIONS, body)
        self.assertEqual(status, 200, payload)
        self.assertEqual(json.loads(payload)["choices"][0]["text"], " tok0 tok1")

    def assert_all_released(self):
        """request_num, the backends' load and the slots in flight are all back to 0."""
        self.cluster.wait_idle()
        m = self.wait_metric(
            lambda m: m.total("glm_proxy_backend_inflight") == 0
            and m.total("glm_proxy_backend_load") == 0
            and m.value("glm_proxy_inflight_requests") == 0
            and m.value("glm_proxy_queued_requests") == 0,
            "load, slots or the line were not released")
        return m


# --------------------------------------------------------------------------------------------
# --max-connections


class MaxConnectionsTests(LimitsCase):
    proxy_args = ("--max-connections", "2")

    def open_served(self):
        """A keep-alive connection the proxy has certainly accepted (it answered on it)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
        self.addCleanup(conn.close)
        conn.request("GET", "/healthcheck")
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        resp.read()
        return conn

    @staticmethod
    def scrape_on(conn):
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise AssertionError(f"/metrics answered {resp.status}: {body!r}")
        return Metrics(body.decode("utf-8"))

    def refused_connection(self, send_request=True):
        """Opens one more connection; returns what the proxy sent before it closed."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=HTTP_TIMEOUT)
        try:
            if send_request:
                s.sendall(raw_http_request("GET", "/healthcheck", b"", port=self.port))
            return read_to_eof(s)
        finally:
            s.close()

    def test_over_the_limit_gets_503_and_is_closed(self):
        a = self.open_served()
        self.open_served()
        status, headers, body = parse_response(self.refused_connection())
        self.assert_503_retry(status, headers, body)
        self.assertEqual(headers.get("connection", "").lower(), "close", headers)
        # The answer does not wait for the request: a client that sends nothing gets it too.
        status, headers, body = parse_response(self.refused_connection(send_request=False))
        self.assert_503_retry(status, headers, body)

        m = self.scrape_on(a)
        self.assertEqual(m.value("glm_proxy_connections_active"), 2, m.text)
        self.assertEqual(self.refusals(m, "max_connections"), 2, m.text)
        # The connections inside the limit still work.
        self.assertEqual(self.scrape_on(a).value("glm_proxy_connections_active"), 2)

    def test_count_goes_back_down(self):
        a = self.open_served()
        b = self.open_served()
        self.assertEqual(parse_response(self.refused_connection())[0], 503)
        b.close()
        wait_until(lambda: self.scrape_on(a).value("glm_proxy_connections_active") == 1, 20,
                   message="the closed connection was not given back")
        # Its place is free again: a new connection is served.
        c = self.open_served()
        m = self.scrape_on(c)
        self.assertEqual(m.value("glm_proxy_connections_active"), 2, m.text)
        self.assertEqual(self.refusals(m, "max_connections"), 1, m.text)

    def test_a_burst_over_the_limit_is_answered_not_left_hanging(self):
        a = self.open_served()
        self.open_served()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: self.refused_connection(), range(40)))
        statuses = [parse_response(x)[0] if x else None for x in answers]
        self.assertEqual(statuses, [503] * 40)
        m = self.scrape_on(a)
        self.assertEqual(self.refusals(m, "max_connections"), 40, m.text)
        self.assertEqual(m.value("glm_proxy_connections_active"), 2, m.text)
        # Inference still works on a connection inside the limit.
        a.request("POST", COMPLETIONS, body=json.dumps({"prompt": "x", "max_tokens": 2}),
                  headers={"Content-Type": "application/json"})
        resp = a.getresponse()
        self.assertEqual(resp.status, 200, resp.read())
        resp.read()


# --------------------------------------------------------------------------------------------
# --max-inflight, no queue


class MaxInflightTests(LimitsCase):
    # Two workers: the limit holds across them, whichever worker each connection lands on.
    proxy_args = ("--max-inflight", "1", "--workers", "2")

    def test_over_the_limit_is_refused_at_once(self):
        held = self.hold_slot()
        self.wait_metric(lambda m: m.value("glm_proxy_inflight_requests") == 1,
                         "the held stream does not show as in flight")
        for path, body in ((COMPLETIONS, {"prompt": "x", "max_tokens": 2}),
                           (CHAT, {"messages": [{"role": "user", "content": "x"}]})):
            status, headers, payload = post_json(self.port, path, body)
            error = self.assert_503_retry(status, headers, payload)
            self.assertIn("in flight", error["message"])
        # Only the held request reached the backends.
        self.assertEqual(len(mock_requests(self.cluster.decode_ports[0])), 1)
        # Other endpoints are not limited.
        self.assertEqual(get(self.port, "/v1/models")[0], 200)
        self.assertEqual(healthcheck(self.port)["request_num"], 1)
        # A refusal is counted once its answer is written: the client can read it first.
        self.wait_metric(lambda m: self.refusals(m, "max_inflight") == 2,
                         "the two refusals were not counted")

        held.close()
        self.assert_all_released()
        self.completion_ok()
        self.assert_all_released()

    def test_slots_are_given_back_on_every_ending(self):
        # A finished request, a stream, an error answer, a backend error and a client that left
        # each give their slot back; with a limit of 1, a leak would refuse the next request.
        # A slot comes back just after the answer's last byte was written, so a client can see
        # its answer before the slot is free: each step waits for the release before the next.
        self.completion_ok()
        self.assert_all_released()
        status, _, events = stream(self.port, COMPLETIONS,
                                   {"prompt": "x", "max_tokens": 3, "stream": True})
        self.assertEqual((status, events[-1]), (200, "[DONE]"))
        self.assert_all_released()
        status, _, _ = post_json(self.port, COMPLETIONS, {"no_prompt": True})
        self.assertEqual(status, 400)
        self.assert_all_released()
        status, _, _ = post_json(self.port, COMPLETIONS,
                                 {"prompt": "x", "mock_fault": "decode_error"})
        self.assertEqual(status, 400)
        self.assert_all_released()
        self.hold_slot().close()
        self.assert_all_released()
        self.completion_ok()
        m = self.assert_all_released()
        self.assertEqual(self.refusals(m, "max_inflight"), 0, m.text)


# --------------------------------------------------------------------------------------------
# --max-inflight with a line


class QueueTests(LimitsCase):
    proxy_args = ("--max-inflight", "1", "--queue-timeout", "120", "--workers", "2")

    def wait_queued(self, n):
        self.wait_metric(lambda m: m.value("glm_proxy_queued_requests") == n,
                         f"glm_proxy_queued_requests did not reach {n}")

    def test_queued_request_is_served_when_the_slot_frees(self):
        held = self.hold_slot()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(post_json, self.port, COMPLETIONS,
                                  {"prompt": "x", "max_tokens": 2})
            self.wait_queued(1)
            self.assertFalse(waiting.done())
            held.close()
            status, _, payload = waiting.result(timeout=60)
        self.assertEqual(status, 200, payload)
        self.assertEqual(json.loads(payload)["choices"][0]["text"], " tok0 tok1")
        m = self.assert_all_released()
        self.assertEqual(self.refusals(m, "queue_timeout"), 0, m.text)
        self.assertEqual(self.refusals(m, "max_inflight"), 0, m.text)

    def test_a_client_leaving_the_line_gives_its_place_up(self):
        held = self.hold_slot()
        leaving = open_raw(self.port, "POST", COMPLETIONS, {"prompt": "x", "max_tokens": 2})
        self.wait_queued(1)
        before = self.scrape().value("glm_proxy_client_disconnects_total")
        leaving.close()
        self.wait_metric(
            lambda m: m.value("glm_proxy_queued_requests") == 0
            and m.value("glm_proxy_client_disconnects_total") == before + 1,
            "the departed client stayed in line")
        self.assertEqual(healthcheck(self.port)["request_num"], 1)
        held.close()
        self.assert_all_released()
        # The slot was not handed to the client that left: the next request gets it.
        self.completion_ok()
        # The departed one never reached a backend.
        self.assertEqual(len(mock_requests(self.cluster.decode_ports[0])), 2)

    def test_a_full_line_refuses_at_once(self):
        # The line holds as many as --max-inflight (1 here); the next one is not queued.
        held = self.hold_slot()
        queued = open_raw(self.port, "POST", COMPLETIONS, {"prompt": "x", "max_tokens": 2})
        self.addCleanup(queued.close)
        self.wait_queued(1)
        status, headers, payload = post_json(self.port, COMPLETIONS,
                                             {"prompt": "x", "max_tokens": 2})
        self.assert_503_retry(status, headers, payload)
        self.wait_metric(lambda m: self.refusals(m, "max_inflight") == 1,
                         "the refusal was not counted")
        held.close()
        status, _, body = read_one_response(queued)
        self.assertEqual(status, 200, body)
        self.assert_all_released()


class QueueOrderTests(LimitsCase):
    # A limit of 2, so that the line holds two.
    proxy_args = ("--max-inflight", "2", "--queue-timeout", "120", "--workers", "2")

    def test_waiters_are_served_in_arrival_order(self):
        held = self.hold_slot()
        self.hold_slot()
        waiters = []
        for i, name in enumerate(("first", "second")):
            sock = open_raw(self.port, "POST", COMPLETIONS, {"prompt": name, "max_tokens": 1})
            self.addCleanup(sock.close)
            waiters.append(sock)
            self.wait_metric(lambda m: m.value("glm_proxy_queued_requests") == i + 1,
                             f"{name} did not join the line")
        # One slot frees: "first" takes it, and "second" gets it after "first" ends.
        held.close()
        for sock in waiters:
            status, _, body = read_one_response(sock)
            self.assertEqual(status, 200, body)
        prompts = [json.loads(r["body"])["prompt"]
                   for r in mock_requests(self.cluster.prefill_ports[0])]
        self.assertEqual(prompts, ["x", "x", "first", "second"])


class QueueTimeoutTests(LimitsCase):
    proxy_args = ("--max-inflight", "1", "--queue-timeout", "0.5")

    def test_a_waiter_times_out_with_503(self):
        held = self.hold_slot()
        status, headers, payload = post_json(self.port, COMPLETIONS,
                                             {"prompt": "x", "max_tokens": 2})
        error = self.assert_503_retry(status, headers, payload)
        self.assertIn("queue timeout", error["message"])
        m = self.wait_metric(lambda m: self.refusals(m, "queue_timeout") == 1,
                             "the queue timeout was not counted")
        self.assertEqual(m.value("glm_proxy_queued_requests"), 0, m.text)
        self.assertEqual(len(mock_requests(self.cluster.prefill_ports[0])), 1)
        held.close()
        self.assert_all_released()
        self.completion_ok()


class SlowDecoderQueueTests(LimitsCase):
    # The slot frees because the request holding it ends on its own.
    # Four at once against a limit of 2: two in flight, two in line (the line holds as many as
    # the limit), none refused.
    decode_args = ("--token-interval-ms", "20")
    proxy_args = ("--max-inflight", "2", "--queue-timeout", "120")

    def test_requests_over_the_limit_wait_and_all_complete(self):
        def one(i):
            return stream(self.port, COMPLETIONS,
                          {"prompt": f"p{i}", "max_tokens": 10, "stream": True})

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(one, range(4)))
        for status, _, events in results:
            self.assertEqual(status, 200, events)
            self.assertEqual(events[-1], "[DONE]")
            self.assertEqual(len(events), 11, events)
        m = self.assert_all_released()
        self.assertEqual(self.refusals(m, "max_inflight"), 0, m.text)
        self.assertEqual(self.refusals(m, "queue_timeout"), 0, m.text)


class DrainTests(LimitsCase):
    proxy_args = ("--max-inflight", "1", "--queue-timeout", "120", "--drain-timeout", "60")

    def queue_behind_held_slot(self):
        held = self.hold_slot()
        waiting = open_raw(self.port, "POST", COMPLETIONS, {"prompt": "x", "max_tokens": 2})
        self.addCleanup(waiting.close)
        self.wait_metric(lambda m: m.value("glm_proxy_queued_requests") == 1,
                         "the second request did not join the line")
        return held, waiting

    def test_sigterm_lets_a_queued_request_be_served(self):
        held, waiting = self.queue_behind_held_slot()
        proxy = self.cluster.proxy
        proxy.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "no longer accepting" in proxy.read_log(), 20,
                   message="the proxy did not start draining")
        # The held request ends during the drain; the one in line gets its slot and is served.
        held.close()
        status, _, body = read_one_response(waiting)
        self.assertEqual(status, 200, body)
        self.assertEqual(proxy.proc.wait(30), 0)

    def test_drain_timeout_with_a_request_in_line_exits_cleanly(self):
        c = self.start_cluster(proxy_args=("--max-inflight", "1", "--queue-timeout", "120",
                                           "--drain-timeout", "0.5"))
        self.cluster = c
        _, waiting = self.queue_behind_held_slot()
        c.proxy.proc.send_signal(signal.SIGTERM)
        # The held request does not end by itself: the drain runs out and ends it (an SSE error
        # event). Its slot goes to the one in line, which gets a clear 503 rather than a cut.
        status, _, body = read_one_response(waiting)
        self.assertEqual(status, 503, body)
        self.assertIn(b"drain", body)
        self.assertEqual(c.proxy.proc.wait(30), 0)
        self.assertIn("ending=drain_timeout", c.proxy.read_log())


# --------------------------------------------------------------------------------------------
# The refusals that existed before the limits are counted too


class ExistingRefusalsTests(LimitsCase):
    proxy_args = ("--max-body-bytes", "100")

    def test_400_413_431_are_counted(self):
        status, _, _ = post_json(self.port, COMPLETIONS, {"prompt": "x" * 200})
        self.assertEqual(status, 413)
        s = socket.create_connection(("127.0.0.1", self.port), timeout=HTTP_TIMEOUT)
        try:
            s.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (70 << 10)
                      + b"\r\n\r\n")
            self.assertEqual(parse_response(read_to_eof(s))[0], 431)
        except ConnectionResetError:
            pass  # the proxy closed while the headers were still arriving; counted all the same
        finally:
            s.close()
        s = socket.create_connection(("127.0.0.1", self.port), timeout=HTTP_TIMEOUT)
        try:
            s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            self.assertEqual(parse_response(read_to_eof(s))[0], 400)
        finally:
            s.close()
        m = self.wait_metric(lambda m: self.refusals(m, "malformed") == 1,
                             "the malformed request was not counted")
        self.assertEqual(self.refusals(m, "body_too_large"), 1, m.text)
        self.assertEqual(self.refusals(m, "headers_too_large"), 1, m.text)


if __name__ == "__main__":
    unittest.main()
