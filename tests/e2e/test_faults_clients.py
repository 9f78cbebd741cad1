"""Fault injection: clients that leave in bursts at random points, and clients that stop
reading their stream (--client-write-timeout).

Run by hand: cd tests/e2e && python3 -m unittest -v test_faults_clients
"""

import concurrent.futures
import random
import socket
import time
import unittest

from fault_case import COMPLETIONS, NO_EJECTION, FaultCase, completion
from faults_common import RawConnection, check_outcome, http_request
from harness import mock_stats, wait_until

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
