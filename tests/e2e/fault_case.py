"""The base of the fault-injection suites (test_faults_*.py): a cluster test case that prints
its processes' logs when a test fails, request bodies with a mock fault, raw streams, and a helper
that runs independent cases at the same time (so hang cases wait out their timeouts together).

The promise each suite checks (see faults_common.py): every client request ends with a complete
answer or a clear error (JSON error before the stream, SSE error event + [DONE] after it), never a
hang or a silent cut, and afterwards request_num and every backend's inflight and load gauges are
back to 0. Timeouts are made short with the proxy's flags; nothing asserts on durations,
everything polls with generous deadlines.
"""

import concurrent.futures

from faults_common import (CHAT, COMPLETIONS, RawConnection, check_outcome, http_request, post,
                           wait_no_load)
from harness import ClusterTestCase, mock_stats, start_mock, start_proxy, wait_until


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


def concurrently(fn, items):
    """fn(item) for every item at the same time; the results in order. An exception in any call
    is raised here, after all have finished."""
    items = list(items)
    with concurrent.futures.ThreadPoolExecutor(max(1, len(items))) as pool:
        return list(pool.map(fn, items))
