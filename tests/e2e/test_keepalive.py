"""Keep-alive connections to the backends (issue #4): reused, never used stale, and never reused
after an incomplete answer."""

import json
import time
import unittest

from harness import ClusterTestCase, get, post_json, stream, wait_until

COMPLETIONS = "/v1/completions"


def tcp_states(remote_port, ignore=frozenset()):
    """Counts of loopback TCP sockets connected to remote_port, by state name, leaving out the
    local addresses in `ignore` (tcp_local_addresses taken earlier: a port number can be reused,
    and an earlier test's TIME_WAIT sockets to it outlive that test by a minute)."""
    names = {"01": "established", "06": "time_wait", "08": "close_wait"}
    counts = {}
    for state, local in _tcp_sockets(remote_port):
        if local not in ignore:
            state = names.get(state, state)
            counts[state] = counts.get(state, 0) + 1
    return counts


def tcp_local_addresses(remote_port):
    """The local addresses of the TCP sockets connected to remote_port now."""
    return frozenset(local for _, local in _tcp_sockets(remote_port))


def _tcp_sockets(remote_port):
    """(state code, local address) of each TCP socket connected to remote_port."""
    out = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            rem_port = int(fields[2].rsplit(":", 1)[1], 16)
            if rem_port == remote_port:
                out.append((fields[3], fields[1]))
    return out


def counter_total(port, name):
    """Sum of every sample of a counter family in /metrics."""
    _, _, body = get(port, "/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


class KeepAliveTests(ClusterTestCase):
    prefillers = 1
    decoders = 1

    def test_sequential_requests_reuse_one_connection_per_backend(self):
        ports = self.cluster.prefill_ports + self.cluster.decode_ports
        before = {port: tcp_local_addresses(port) for port in ports}
        for i in range(6):
            status, _, events = stream(self.port, COMPLETIONS,
                                       {"prompt": f"p{i}", "max_tokens": 2, "stream": True})
            self.assertEqual(status, 200, events)
            self.assertEqual(events[-1], "[DONE]")
            status, _, body = post_json(self.port, COMPLETIONS, {"prompt": "x", "max_tokens": 2})
            self.assertEqual(status, 200, body)
        for port in ports:
            states = tcp_states(port, ignore=before[port])
            # The proxy closes first when it does not reuse: a TIME_WAIT per request would show.
            self.assertEqual(states.get("time_wait", 0), 0, states)
            # One connection per backend, or two if a request came in while the previous one's
            # connection was on its way back to the pool; never one per request.
            self.assertIn(states.get("established", 0), (1, 2), states)


class StaleConnectionTests(ClusterTestCase):
    prefillers = 1
    decoders = 1
    # The backends close idle connections after 150 ms, as uvicorn does after 5 s.
    prefill_args = ("--keep-alive-timeout-ms", "150")
    decode_args = ("--keep-alive-timeout-ms", "150")

    def test_a_connection_the_backend_closed_is_not_an_error(self):
        # The backends close within 150 ms, under the pool's one-second look_after: the proxy
        # takes the closed connection without looking, and its silent retry on a fresh one must
        # serve the request (no upstream error, no retry counted).
        for i in range(4):
            status, _, events = stream(self.port, COMPLETIONS,
                                       {"prompt": f"p{i}", "max_tokens": 2, "stream": True})
            self.assertEqual(status, 200, events)
            self.assertEqual(events[-1], "[DONE]")
            # Let the backends close the idle connections the proxy keeps.
            wait_until(lambda: all(tcp_states(p).get("established", 0) == 0
                                   for p in self.cluster.prefill_ports + self.cluster.decode_ports),
                       message="the backends did not close idle connections")
            time.sleep(0.05)
        self.assertEqual(counter_total(self.port, "glm_proxy_upstream_errors_total"), 0)
        self.assertEqual(counter_total(self.port, "glm_proxy_retries_total"), 0)


class IncompleteAnswerTests(ClusterTestCase):
    prefillers = 1
    decoders = 1

    def test_a_cut_answer_never_goes_back_to_the_pool(self):
        status, _, events = stream(self.port, COMPLETIONS, {
            "prompt": "x", "max_tokens": 8, "stream": True, "mock_fault": "decode_cut"})
        self.assertEqual(status, 200)
        self.assertIn("error", events[-2])
        self.assertEqual(events[-1], "[DONE]")
        for i in range(3):
            status, _, events = stream(self.port, COMPLETIONS,
                                       {"prompt": f"p{i}", "max_tokens": 3, "stream": True})
            self.assertEqual(status, 200, events)
            self.assertEqual(events[-1], "[DONE]")
            texts = [json.loads(e)["choices"][0]["text"] for e in events[:-1]]
            self.assertEqual("".join(texts), " tok0 tok1 tok2", events)
        self.cluster.wait_idle()


if __name__ == "__main__":
    unittest.main()
