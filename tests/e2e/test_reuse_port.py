"""--reuse-port: a new glm-proxy starts on the port of a running one, takes the port's new
connections, and the old one drains after SIGTERM. Clients hammering the port through the
hand-over see no refused or reset connection and no cut stream."""

import signal
import threading
import unittest

from harness import (GLM_PROXY_BIN, Process, clean_env, get, mock_stats, run_proxy, start_mock,
                     stream, wait_until)

COMPLETIONS = "/v1/completions"
CLIENTS = 4
PROBERS = 4
REQUESTS = 40
TOKENS = 3
LONG_TOKENS = 300


class ReusePortTests(unittest.TestCase):
    def setUp(self):
        self.procs = []
        self.prefiller = self.own(start_mock(name="prefill-0", engine_id="prefill-0"))
        self.decoder = self.own(start_mock("--token-interval-ms", "20", name="decode-0",
                                           engine_id="decode-0"))

    def own(self, p):
        self.procs.append(p)
        return p

    def tearDown(self):
        for p in reversed(self.procs):
            p.stop()
            p.close_log()

    def proxy(self, name, port, *extra):
        p = self.own(Process(name, [GLM_PROXY_BIN, "--host", "127.0.0.1", "--port", str(port),
                                    "--prefill", f"127.0.0.1:{self.prefiller.port}",
                                    "--decode", f"127.0.0.1:{self.decoder.port}", *extra],
                             env=clean_env()))
        p.wait_listening()
        return p

    def test_without_reuse_port_the_port_is_taken(self):
        old = self.proxy("glm-proxy-old", 0)
        code, out = run_proxy(["--host", "127.0.0.1", "--port", str(old.port),
                               "--prefill", f"127.0.0.1:{self.prefiller.port}",
                               "--decode", f"127.0.0.1:{self.decoder.port}"])
        self.assertEqual(code, 1, out)
        self.assertIn("cannot listen", out)

    def test_the_newest_process_takes_every_new_connection(self):
        # What makes the hand-over safe: once the new process says "listening on", no new
        # connection goes to the old one, so none can wait in the old one's accept queue when it
        # closes (the kernel would reset it). Plain SO_REUSEPORT would hash about half of these
        # to the old process.
        old = self.proxy("glm-proxy-old", 0, "--reuse-port")
        self.assertIn("0 older listener(s)", old.read_log())
        new = self.proxy("glm-proxy-new", old.port, "--reuse-port")
        self.assertIn("1 older listener(s)", new.read_log())
        before = old.read_log().count("access client=")
        for _ in range(REQUESTS):
            status, _, _ = get(old.port, "/healthcheck")
            self.assertEqual(status, 200)
        wait_until(lambda: new.read_log().count("access client=") == REQUESTS, 10,
                   message="the new process did not log every request")
        self.assertEqual(old.read_log().count("access client="), before)
        # The old one leaves; the new one goes on alone.
        self.assertEqual(old.stop(), 0)
        status, _, _ = get(new.port, "/healthcheck")
        self.assertEqual(status, 200)
        self.assertEqual(new.stop(), 0)

    def test_hand_over_refuses_nobody_and_cuts_no_stream(self):
        old = self.proxy("glm-proxy-old", 0, "--reuse-port")
        port = old.port
        stop = threading.Event()
        results = []  # (ok, description) per request
        lock = threading.Lock()

        def client():
            while not stop.is_set():
                try:
                    status, _, events = stream(port, COMPLETIONS, {
                        "prompt": "x", "max_tokens": TOKENS, "stream": True})
                    ok = (status == 200 and len(events) == TOKENS + 1 and events[-1] == "[DONE]"
                          and not any("error" in e for e in events))
                    outcome = (ok, f"status {status}, events {events}")
                except Exception as e:  # refused, reset, cut: each is a failure of the hand-over
                    outcome = (False, repr(e))
                with lock:
                    results.append(outcome)

        # A long stream on the old process (6 s), which the drain must let finish.
        long_result = {}

        def long_stream():
            try:
                long_result["answer"] = stream(port, COMPLETIONS, {
                    "prompt": "long", "max_tokens": LONG_TOKENS, "stream": True})
            except Exception as e:
                long_result["error"] = repr(e)

        def prober():
            # Short requests on fresh connections, as fast as they go: the hand-over's window for
            # a refused or reset connection, if it had one, would be hit.
            while not stop.is_set():
                try:
                    status, _, body = get(port, "/healthcheck")
                    outcome = (status == 200, f"healthcheck status {status}")
                except Exception as e:
                    outcome = (False, "healthcheck: " + repr(e))
                with lock:
                    probes.append(outcome)

        probes = []
        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        threads += [threading.Thread(target=prober) for _ in range(PROBERS)]
        for t in threads:
            t.start()
        long_thread = threading.Thread(target=long_stream)
        long_thread.start()
        wait_until(lambda: len(results) >= 20, 30, message="the clients made no progress")

        new = self.proxy("glm-proxy-new", port, "--reuse-port")
        self.assertIn("1 older listener(s)", new.read_log())
        served_by_new = lambda: new.read_log().count("access client=") >= 10
        wait_until(served_by_new, 30, message="the new process served nothing")
        old.proc.send_signal(signal.SIGTERM)
        self.assertEqual(old.proc.wait(30), 0, old.read_log()[-3000:])
        with lock:
            at_exit = len(results)
        wait_until(lambda: len(results) >= at_exit + 20, 30,
                   message="the clients made no progress after the old process left")
        stop.set()
        for t in threads:
            t.join(30)
        long_thread.join(60)

        failures = [d for ok, d in results + probes if not ok]
        self.assertEqual(failures, [], f"{len(failures)} of {len(results) + len(probes)} "
                                       "requests failed")
        self.assertNotIn("error", long_result)
        status, _, events = long_result["answer"]
        self.assertEqual((status, len(events), events[-1]), (200, LONG_TOKENS + 1, "[DONE]"))
        # Both processes served; the old one drained its last streams.
        self.assertGreater(old.read_log().count("access client="), 0)
        self.assertGreater(new.read_log().count("access client="), 0)
        self.assertEqual(mock_stats(self.decoder.port)["active_streams"], 0)
        self.assertEqual(new.stop(), 0)


if __name__ == "__main__":
    unittest.main()
