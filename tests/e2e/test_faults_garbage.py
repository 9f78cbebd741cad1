"""Fault injection: backends that answer garbage, non-HTTP bytes, or reset the connection.

Run by hand: cd tests/e2e && python3 -m unittest -v test_faults_garbage
"""

import socket
import threading
import unittest

from fault_case import CHAT, COMPLETIONS, NO_EJECTION, FaultCase, completion
from faults_common import wait_no_load
from harness import mock_stats

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


if __name__ == "__main__":
    unittest.main()
