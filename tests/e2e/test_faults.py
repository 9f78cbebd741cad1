"""Fault injection: backends that die, hang, talk garbage or refuse; clients that leave in bursts.

Every case checks the proxy's promise (see faults_common.py): each client request ends with a
complete answer or a clear error (JSON error before the stream, SSE error event + [DONE] after
it), never a hang or a silent cut, and afterwards request_num and every backend's inflight and
load gauges are back to 0. Timeouts are made short with the proxy's flags; nothing asserts on
durations, everything polls with generous deadlines.

Run by hand: cd tests/e2e && python3 -m unittest -v test_faults
"""

import concurrent.futures
import random
import socket
import threading
import time
import unittest

from faults_common import (CHAT, COMPLETIONS, RawConnection, check_json_error, check_outcome,
                           http_request, post, tokens_text, wait_no_load)
from harness import (ClusterTestCase, closed_ports, healthcheck, mock_stats, start_mock,
                     start_proxy, wait_until)


# Outlier ejection off: these cases check what a client sees for each fault, which ejection
# (after --eject-after failures in a row) would turn into an immediate 503 for the next requests.
NO_EJECTION = ("--eject-after", "0")


def completion(n, stream, fault=None, chat=False, prompt="fault test"):
    body = {"model": "mock-model", "max_tokens": n, "stream": stream}
    if chat:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if fault:
        body["mock_fault"] = fault
    return body


class FaultCase(ClusterTestCase):
    prefillers = 1
    decoders = 1

    def start_processes(self, prefill_ports, decode_ports, proxy_args=()):
        """A proxy over the given ports (for closed ports and scripted backends); stopped at
        cleanup."""
        p = start_proxy(prefill_ports, decode_ports, proxy_args)
        self.addCleanup(self._stop_process, p)
        return p

    def start_mock(self, *args, name="mock"):
        m = start_mock(*args, name=name)
        self.addCleanup(self._stop_process, m)
        return m

    def _stop_process(self, p):
        p.stop()
        if self._failed():
            print(f"\n----- {p.name} log\n{p.read_log()}")
        p.close_log()

    def assert_outcome(self, port, body, expect, path=COMPLETIONS, status=None):
        """Sends one request; `expect` is "complete" or "error". Returns the detail."""
        code, headers, payload = post(port, path, body)
        kind, detail = check_outcome(code, headers, payload, body.get("stream", False),
                                     n=body.get("max_tokens"), chat=path == CHAT)
        self.assertEqual(kind, expect, f"status {code}: {payload[:400]!r}")
        if status is not None:
            self.assertEqual(code, status, payload[:400])
        return detail

    def assert_idle(self, cluster=None, port=None, live_mocks=None):
        cluster = cluster or self.cluster
        wait_no_load(port or cluster.port)
        for m in live_mocks if live_mocks is not None else cluster.mocks:
            wait_until(lambda: mock_stats(m.port)["active_streams"] == 0, 10,
                       message=f"{m.name} still streams to the proxy",
                       describe=lambda: mock_stats(m.port))


def start_streams(port, n, max_tokens, path=COMPLETIONS):
    """n raw streaming requests, each read until its first token arrived."""
    conns = []
    for i in range(n):
        c = RawConnection(port)
        conns.append(c)
        c.send(http_request("POST", path, completion(max_tokens, True, prompt=f"stream {i}",
                                                     chat=path == CHAT)))
    for c in conns:
        if not c.read_until(b"tok0"):
            raise AssertionError(f"stream closed before its first token: {c.buf!r}")
    return conns


def finish(conn, stream, n):
    """Reads the rest of a raw request's answer and classifies it (check_outcome)."""
    try:
        res = conn.read_response()
        if res is None:
            raise AssertionError("connection closed without an answer")
        return check_outcome(res.status, res.headers, res.body, stream, n=n)
    finally:
        conn.close()


# ----------------------------------------------------------------------------------------------
# A backend process killed (SIGKILL) while requests are open


class KillTests(FaultCase):
    auto_cluster = False

    def test_sole_decoder_killed_mid_stream(self):
        c = self.start_cluster(prefillers=1, decoders=1, decode_args=("--token-interval-ms", "100"),
                               proxy_args=("--max-retries", "2", "--retry-delay", "0.01"))
        streams = start_streams(c.port, 6, 300)
        plain = []
        for i in range(3):
            conn = RawConnection(c.port)
            conn.send(http_request("POST", COMPLETIONS, completion(300, False, prompt=f"p{i}")))
            plain.append(conn)
        wait_until(lambda: mock_stats(c.decoders[0].port)["decode"] == 9, 10,
                   message="not every request reached the decoder",
                   describe=lambda: mock_stats(c.decoders[0].port))
        c.decoders[0].proc.kill()
        c.decoders[0].proc.wait(10)
        for conn in streams:
            kind, message = finish(conn, True, 300)
            self.assertEqual(kind, "error", "a stream whose decoder died must end with an error")
            self.assertIn("decode", message)
        for conn in plain:
            # Nothing was sent yet: the proxy retries and finds the port closed (502), or the
            # decoder already ejected after its failures in a row (503).
            res = conn.read_response()
            self.assertIn(res.status, (502, 503), res.body)
            check_json_error(res.status, res.headers, res.body)
            conn.close()
        wait_no_load(c.port)
        # The dead decoder is ejected (or, if not yet, refuses): a new request gets a clear 503
        # with Retry-After (or 502), never a hang.
        code, headers, payload = post(c.port, COMPLETIONS, completion(2, True))
        self.assertIn(code, (502, 503), payload)
        check_json_error(code, headers, payload)
        if code == 503:
            self.assertIn("retry-after", headers, headers)
        wait_no_load(c.port)

    def test_one_of_two_decoders_killed_mid_stream(self):
        c = self.start_cluster(prefillers=1, decoders=2, decode_args=("--token-interval-ms", "100"),
                               proxy_args=("--retry-delay", "0.01"))
        n = 40
        streams = start_streams(c.port, 8, n)
        plain = []
        for i in range(4):
            conn = RawConnection(c.port)
            conn.send(http_request("POST", COMPLETIONS, completion(n, False, prompt=f"p{i}")))
            plain.append(conn)
        total = lambda: sum(mock_stats(d.port)["decode"] for d in c.decoders)  # noqa: E731
        wait_until(lambda: total() == 12, 10, message="not every request reached a decoder",
                   describe=lambda: [mock_stats(d.port) for d in c.decoders])
        on_victim = mock_stats(c.decoders[0].port)["active_streams"]
        self.assertGreater(on_victim, 0, "the balancer put no stream on decoder 0")
        c.decoders[0].proc.kill()
        c.decoders[0].proc.wait(10)
        kinds = [finish(conn, True, n)[0] for conn in streams]
        self.assertEqual(kinds.count("error"), on_victim, kinds)
        self.assertEqual(kinds.count("complete"), 8 - on_victim, kinds)
        # Non-stream requests had sent nothing to their clients yet: the ones on the dead decoder
        # fail over to the live one and complete.
        for conn in plain:
            self.assertEqual(finish(conn, False, n)[0], "complete")
        # New requests may pick the dead decoder first; they fail over before the first byte.
        for i in range(6):
            self.assert_outcome(c.port, completion(3, i % 2 == 0, chat=i % 3 == 0), "complete",
                                path=CHAT if i % 3 == 0 else COMPLETIONS)
        self.assert_idle(c, live_mocks=c.prefillers + c.decoders[1:])

    def test_prefiller_killed_during_prefill(self):
        c = self.start_cluster(prefillers=2, decoders=1, prefill_args=("--prefill-delay-ms", "1500"),
                               proxy_args=("--retry-delay", "0.01"))
        conns = []
        for i in range(6):
            conn = RawConnection(c.port)
            conn.send(http_request("POST", COMPLETIONS, completion(4, i % 2 == 0, prompt=f"k{i}")))
            conns.append(conn)
        wait_until(lambda: sum(mock_stats(p.port)["prefill"] for p in c.prefillers) == 6, 10,
                   message="not every prefill started",
                   describe=lambda: [mock_stats(p.port) for p in c.prefillers])
        self.assertGreater(mock_stats(c.prefillers[0].port)["prefill"], 0)
        c.prefillers[0].proc.kill()
        c.prefillers[0].proc.wait(10)
        for i, conn in enumerate(conns):
            self.assertEqual(finish(conn, i % 2 == 0, 4)[0], "complete")
        self.assert_idle(c, live_mocks=c.prefillers[1:] + c.decoders)


# ----------------------------------------------------------------------------------------------
# Backends that hang: before their headers, or in the middle of the body


class HangTests(FaultCase):
    prefillers = 2
    decoders = 2
    # 2 s: short for the suite's run time, long enough that a loaded machine does not trip it
    # on a healthy backend.
    proxy_args = ("--prefill-timeout", "2", "--stream-idle-timeout", "2", "--max-retries", "2",
                  "--retry-delay", "0.01") + NO_EJECTION

    def disconnects(self, mocks):
        return sum(mock_stats(m.port)["client_disconnects"] for m in mocks)

    def test_prefill_hangs_before_headers(self):
        for stream in (False, True):
            message = self.assert_outcome(self.port, completion(3, stream, "prefill_hang"), "error",
                                          status=504)
            self.assertIn("timed out", message)
        # Both attempts of both requests were hung connections the proxy closed.
        wait_until(lambda: self.disconnects(self.cluster.prefillers) == 4, 10,
                   message="the proxy left hung prefill connections open",
                   describe=lambda: [mock_stats(m.port) for m in self.cluster.prefillers])
        self.assertEqual(sum(mock_stats(d.port)["requests"] for d in self.cluster.decoders), 0)
        self.assert_idle()

    def test_prefill_hangs_mid_body(self):
        self.assert_outcome(self.port, completion(3, True, "prefill_hang_body"), "error",
                            status=504)
        self.assert_idle()

    def test_decode_hangs_before_headers(self):
        for stream, fault in ((True, "decode_hang_headers"), (False, "decode_hang_headers"),
                              (False, "decode_hang")):
            # Before the first byte the client still gets a status: a JSON 504, not a stream.
            self.assert_outcome(self.port, completion(3, stream, fault), "error", status=504)
        wait_until(lambda: self.disconnects(self.cluster.decoders) == 6, 10,
                   message="the proxy left hung decode connections open",
                   describe=lambda: [mock_stats(m.port) for m in self.cluster.decoders])
        self.assert_idle()

    def test_decode_hangs_mid_stream(self):
        for path in (COMPLETIONS, CHAT):
            message = self.assert_outcome(self.port, completion(4, True, "decode_hang",
                                                                chat=path == CHAT),
                                          "error", path=path, status=200)
            self.assertIn("sent nothing", message)
        wait_until(lambda: self.disconnects(self.cluster.decoders) == 2, 10,
                   message="the proxy left the stalled streams open")
        self.assert_idle()

    def test_decode_hangs_mid_body(self):
        self.assert_outcome(self.port, completion(4, False, "decode_hang_body"), "error",
                            status=504)
        self.assert_idle()

    def test_slow_stream_is_not_cut(self):
        # Tokens every 0.5 s for 7 tokens: longer than the 2 s idle timeout in total, but no gap
        # comes near it. The timeout bounds a gap, not the stream.
        c = self.start_cluster(decode_args=("--token-interval-ms", "500"))
        self.assert_outcome(c.port, completion(7, True), "complete")
        self.assert_idle(c)


# ----------------------------------------------------------------------------------------------
# Backends that answer garbage, non-HTTP bytes, or reset the connection


class GarbageServer:
    """Accepts connections and answers each with `reply` bytes, then closes: a port where
    something else than vLLM listens."""

    def __init__(self, reply):
        self.reply = reply
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            try:
                conn.sendall(self.reply)
                conn.shutdown(socket.SHUT_WR)
                conn.settimeout(2)
                while conn.recv(65536):
                    pass
            except OSError:
                pass
            finally:
                conn.close()

    def close(self):
        self.sock.close()


class GarbageTests(FaultCase):
    prefillers = 2
    decoders = 2
    proxy_args = ("--max-retries", "2", "--retry-delay", "0.01") + NO_EJECTION

    def test_prefill_faults_are_502(self):
        for fault in ("prefill_garbage", "prefill_reset", "prefill_bad_json"):
            for stream in (False, True):
                with self.subTest(fault=fault, stream=stream):
                    self.assert_outcome(self.port, completion(3, stream, fault), "error",
                                        status=502)
        self.assertEqual(sum(mock_stats(d.port)["requests"] for d in self.cluster.decoders), 0)
        self.assert_idle()

    def test_decode_faults_before_headers_are_502(self):
        for fault in ("decode_garbage", "decode_reset", "decode_bad_header"):
            for stream, path in ((False, COMPLETIONS), (True, COMPLETIONS), (True, CHAT)):
                with self.subTest(fault=fault, stream=stream, path=path):
                    self.assert_outcome(self.port, completion(3, stream, fault, chat=path == CHAT),
                                        "error", path=path, status=502)
        self.assert_idle()

    def test_decode_faults_mid_stream_end_with_error_event(self):
        for fault in ("decode_reset_mid", "decode_bad_chunk", "decode_cut"):
            for path in (COMPLETIONS, CHAT):
                with self.subTest(fault=fault, path=path):
                    self.assert_outcome(self.port, completion(6, True, fault, chat=path == CHAT),
                                        "error", path=path, status=200)
        self.assert_idle()

    def test_decode_reset_mid_body_is_502(self):
        self.assert_outcome(self.port, completion(6, False, "decode_reset_mid"), "error",
                            status=502)
        self.assert_idle()

    def test_backends_that_do_not_speak_http(self):
        replies = [b"SSH-2.0-OpenSSH_9.2p1\r\n", b"\x16\x03\x03\x00\x02\x02\x28",
                   b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n", b""]
        for reply in replies:
            with self.subTest(reply=reply):
                server = GarbageServer(reply)
                self.addCleanup(server.close)
                # As the only prefiller; then as the only decoder behind a real prefiller.
                p = self.start_processes([server.port], self.cluster.decode_ports,
                                         self.proxy_args)
                self.assert_outcome(p.port, completion(3, True), "error", status=502)
                wait_no_load(p.port)
                d = self.start_processes(self.cluster.prefill_ports, [server.port],
                                         self.proxy_args)
                self.assert_outcome(d.port, completion(3, True), "error", status=502)
                self.assert_outcome(d.port, completion(3, False), "error", status=502)
                wait_no_load(d.port)
                self.assertEqual(server.accepted, 2 + 4, "each attempt made one connection")


# ----------------------------------------------------------------------------------------------
# Backends that refuse connections (nothing listens on the port)


class RefusedTests(FaultCase):
    auto_cluster = False
    retry_args = ("--max-retries", "3", "--retry-delay", "0.01")

    def test_sole_prefiller_refuses(self):
        d = self.start_mock(name="decode")
        p = self.start_processes(closed_ports(1), [d.port], self.retry_args + NO_EJECTION)
        for stream in (False, True):
            message = self.assert_outcome(p.port, completion(3, stream), "error", status=502)
            self.assertIn("prefill", message)
        self.assertEqual(mock_stats(d.port)["requests"], 0)
        wait_no_load(p.port)

    def test_sole_decoder_refuses(self):
        pf = self.start_mock(name="prefill")
        p = self.start_processes([pf.port], closed_ports(1), self.retry_args + NO_EJECTION)
        for stream in (False, True):
            message = self.assert_outcome(p.port, completion(3, stream), "error", status=502)
            self.assertIn("decode", message)
        wait_no_load(p.port)

    def test_failover_to_the_healthy_instance(self):
        pf = self.start_mock(name="prefill")
        d = self.start_mock(name="decode")
        dead = closed_ports(2)
        # The dead instance is listed first, so it wins every tie and is tried first.
        for prefill, decode in (([dead[0], pf.port], [d.port]), ([pf.port], [dead[1], d.port])):
            with self.subTest(prefill=prefill, decode=decode):
                p = self.start_processes(prefill, decode, self.retry_args)
                for i in range(6):
                    self.assert_outcome(p.port, completion(3, i % 2 == 0), "complete")
                wait_no_load(p.port)

    def test_everything_refuses(self):
        # With outlier ejection on (the default), the dead instances are soon out of rotation:
        # the first requests get 502 after their retries, later ones an immediate 503 that says
        # when to come back.
        dead = closed_ports(4)
        p = self.start_processes(dead[:2], dead[2:], self.retry_args)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(lambda i: post(p.port, COMPLETIONS, completion(2, i % 2 == 0)),
                                     range(16)))
        statuses = [status for status, _, _ in outcomes]
        for status, headers, body in outcomes:
            self.assertIn(status, (502, 503), body)
            check_json_error(status, headers, body)
            if status == 503:
                self.assertIn("retry-after", headers, headers)
        self.assertIn(503, statuses, "the dead prefillers were never ejected")
        wait_no_load(p.port)


# ----------------------------------------------------------------------------------------------
# Clients that leave in bursts, at random points


class DisconnectBurstTests(FaultCase):
    auto_cluster = False

    def test_50_clients_leave_at_random_points(self):
        c = self.start_cluster(prefillers=2, decoders=2,
                               prefill_args=("--prefill-delay-ms", "100"),
                               decode_args=("--token-interval-ms", "20"),
                               proxy_args=("--workers", "2"))
        seed = random.randrange(1 << 30)
        rng = random.Random(seed)
        n_tokens = 100  # 2 s of tokens: every client that leaves mid-stream leaves a live stream
        points = ["partial_headers", "partial_body", "during_prefill", "after_status",
                  "mid_stream", "non_stream_wait", "complete"]
        plan = [(i, rng.choice(points), rng.randrange(1, 30)) for i in range(50)]

        def client(item):
            i, point, k = item
            stream = point != "non_stream_wait"
            raw = http_request("POST", COMPLETIONS, completion(n_tokens, stream, prompt=f"c{i}"))
            conn = RawConnection(c.port)
            try:
                if point == "partial_headers":
                    conn.send(raw[:raw.index(b"\r\n\r\n") // 2])
                    return point, None
                if point == "partial_body":
                    conn.send(raw[:-10])
                    return point, None
                conn.send(raw)
                if point in ("during_prefill", "non_stream_wait"):
                    time.sleep(k / 200)
                    return point, None
                if point == "after_status":
                    conn.read_until(b"\r\n")
                    return point, None
                if point == "mid_stream":
                    conn.read_until(f" tok{k % n_tokens}\"".encode())
                    return point, None
                res = conn.read_response()
                return point, check_outcome(res.status, res.headers, res.body, True, n=n_tokens)
            finally:
                conn.close()

        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            results = list(pool.map(client, plan))
        for point, outcome in results:
            if point == "complete":
                self.assertEqual(outcome[0], "complete", f"seed {seed}")
        # Each client that left a running stream made the proxy close that decode connection
        # (the mock counts it): vLLM would stop generating for it.
        left_streaming = sum(1 for _, point, _ in plan if point in ("after_status", "mid_stream"))
        wait_until(lambda: sum(mock_stats(d.port)["client_disconnects"]
                               for d in c.decoders) >= left_streaming, 10,
                   message=f"decode streams left open for clients that left (seed {seed})",
                   describe=lambda: [mock_stats(d.port) for d in c.decoders])
        self.assert_idle(c)
        # Still serves normally.
        for i in range(4):
            self.assert_outcome(c.port, completion(5, i % 2 == 0), "complete")
        self.assertTrue(c.proxy.running())
        self.assert_idle(c)


# ----------------------------------------------------------------------------------------------
# A client that stops reading its stream (--client-write-timeout)


class StalledClientTests(FaultCase):
    auto_cluster = False

    def test_a_client_that_stops_reading_is_dropped_after_the_write_timeout(self):
        # Tokens as fast as the mock can send them: the proxy's send buffer and the client's
        # small receive buffer fill within a few thousand events, then the proxy's write waits.
        c = self.start_cluster(prefillers=1, decoders=1,
                               decode_args=("--token-interval-ms", "0"),
                               proxy_args=("--client-write-timeout", "1") + NO_EJECTION)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
        sock.settimeout(30)
        sock.connect(("127.0.0.1", c.port))
        sock.sendall(http_request("POST", COMPLETIONS, completion(1_000_000, True)))
        head = b""
        while b"tok0" not in head:
            data = sock.recv(4096)
            self.assertTrue(data, f"closed before the first token: {head[:300]!r}")
            head += data
        # The client reads nothing more. The proxy must give up on it, close the decode stream
        # (vLLM would stop generating) and release every load, not wait for a million tokens.
        decoder = c.decoders[0]
        wait_until(lambda: mock_stats(decoder.port)["client_disconnects"] == 1, 30,
                   message="the proxy kept the decode stream of a client that stopped reading",
                   describe=lambda: mock_stats(decoder.port))
        self.assert_idle(c)
        # And it closed the client's connection: what is still buffered ends in EOF or a reset,
        # never in the stream's end.
        rest = b""
        try:
            while data := sock.recv(65536):
                rest += data
        except ConnectionResetError:
            pass
        self.assertNotIn(b"[DONE]", rest)
        self.assert_outcome(c.port, completion(5, True), "complete")
        self.assertTrue(c.proxy.running())

    def test_a_slow_reader_gets_every_byte_in_order(self):
        # The decoder sends as fast as it can, the client takes 16 KiB every 5 ms: once the
        # kernel's buffers are full (a few MiB on loopback) the proxy's writes find the socket
        # full, send part of an event and finish it when the client has read. Nothing may be lost
        # or reordered, and the stream must end properly.
        c = self.start_cluster(prefillers=1, decoders=1,
                               decode_args=("--token-interval-ms", "0"),
                               proxy_args=NO_EJECTION)
        n = 40_000  # about 9 MiB of events

        class SlowReader(RawConnection):
            recv_size = 16384

            def _fill(self, deadline):
                time.sleep(0.005)
                return super()._fill(deadline)

        with SlowReader(c.port, timeout=60) as conn:
            conn.send(http_request("POST", COMPLETIONS, completion(n, True)))
            res = conn.read_response()
        self.assertIsNotNone(res, "connection closed without an answer")
        kind, _ = check_outcome(res.status, res.headers, res.body, True, n=n)
        self.assertEqual(kind, "complete")
        self.assert_idle(c)


if __name__ == "__main__":
    unittest.main()
