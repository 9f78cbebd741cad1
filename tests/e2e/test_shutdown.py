"""Graceful shutdown: on SIGTERM/SIGINT glm-proxy stops accepting, lets streams in flight finish
and exits 0; past --drain-timeout it exits anyway."""

import signal
import socket
import threading
import unittest

from harness import ClusterTestCase, stream, wait_until, mock_stats

COMPLETIONS = "/v1/completions"


class ShutdownTests(ClusterTestCase):
    prefillers = 1
    decoders = 1
    decode_args = ("--token-interval-ms", "100")

    def start_stream(self, port, tokens):
        result = {}

        def run():
            try:
                result["answer"] = stream(port, COMPLETIONS,
                                          {"prompt": "x", "max_tokens": tokens, "stream": True})
            except Exception as e:  # reported by the assertions below
                result["error"] = e

        t = threading.Thread(target=run)
        t.start()
        wait_until(lambda: mock_stats(self.cluster.decoders[0].port)["active_streams"] == 1, 10,
                   message="the stream never reached the decoder")
        return t, result

    def assert_refuses_connections(self, port):
        def refused():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return False
            except OSError:
                return True
        wait_until(refused, 10, message="glm-proxy still accepts connections after SIGTERM")

    def test_sigterm_drains_streams_then_exits_zero(self):
        port = self.port
        t, result = self.start_stream(port, 10)
        self.cluster.proxy.proc.send_signal(signal.SIGTERM)
        self.assert_refuses_connections(port)
        t.join(20)
        self.assertNotIn("error", result)
        status, headers, events = result["answer"]
        self.assertEqual(status, 200)
        tokens = [e for e in events if e != "[DONE]"]
        self.assertEqual(len(tokens), 10, "the stream in flight was cut by the shutdown")
        self.assertEqual(events[-1], "[DONE]")
        self.assertEqual(self.cluster.proxy.proc.wait(20), 0)

    def test_sighup_during_the_drain_changes_nothing(self):
        # Supervisors send HUP by reflex; during a drain it must neither kill nor cut.
        port = self.port
        t, result = self.start_stream(port, 10)
        proc = self.cluster.proxy.proc
        proc.send_signal(signal.SIGTERM)
        self.assert_refuses_connections(port)
        proc.send_signal(signal.SIGHUP)
        t.join(20)
        self.assertNotIn("error", result)
        status, _, events = result["answer"]
        self.assertEqual(status, 200)
        self.assertEqual(len([e for e in events if e != "[DONE]"]), 10)
        self.assertEqual(proc.wait(20), 0)

    def test_sigint_with_nothing_in_flight_exits_zero(self):
        self.cluster.proxy.proc.send_signal(signal.SIGINT)
        self.assertEqual(self.cluster.proxy.proc.wait(20), 0)

    def test_drain_timeout_bounds_the_wait(self):
        c = self.start_cluster(proxy_args=("--drain-timeout", "0.5"))
        result = {}

        def run():
            try:
                result["answer"] = stream(c.port, COMPLETIONS, {
                    "prompt": "x", "max_tokens": 4, "stream": True, "mock_fault": "decode_hang"})
            except Exception as e:
                result["error"] = e

        sock_thread = threading.Thread(target=run)
        sock_thread.start()
        wait_until(lambda: mock_stats(c.decoders[0].port)["active_streams"] == 1, 10,
                   message="the stream never reached the decoder")
        c.proxy.proc.send_signal(signal.SIGTERM)
        self.assertEqual(c.proxy.proc.wait(20), 0)
        sock_thread.join(20)


if __name__ == "__main__":
    unittest.main()
