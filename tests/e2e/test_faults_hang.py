"""Fault injection: backends that hang, before their headers or in the middle of the body.

The cases of one test are independent, so their requests run at the same time and wait out the
proxy's timeouts together.

Run by hand: cd tests/e2e && python3 -m unittest -v test_faults_hang
"""

import unittest

from fault_case import CHAT, COMPLETIONS, NO_EJECTION, FaultCase, completion, concurrently
from harness import mock_stats, wait_until

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

    def test_prefill_hangs(self):
        # Independent cases, at the same time: their 2 s timeouts run out together.
        cases = [(False, "prefill_hang"), (True, "prefill_hang"), (True, "prefill_hang_body")]
        messages = concurrently(
            lambda case: self.assert_outcome(self.port, completion(3, case[0], case[1]), "error",
                                             status=504),
            cases)
        for (_, fault), message in zip(cases, messages):
            if fault == "prefill_hang":
                self.assertIn("timed out", message)
        # Both attempts of every request were hung connections the proxy closed.
        wait_until(lambda: self.disconnects(self.cluster.prefillers) == 2 * len(cases), 10,
                   message="the proxy left hung prefill connections open",
                   describe=lambda: [mock_stats(m.port) for m in self.cluster.prefillers])
        self.assertEqual(sum(mock_stats(d.port)["requests"] for d in self.cluster.decoders), 0)
        self.assert_idle()

    def test_decode_hangs(self):
        # Before the first byte the client still gets a status: a JSON 504, not a stream; each
        # of those was tried twice. After the stream began, the SSE error event ends it (200).
        before_headers = [(True, "decode_hang_headers", COMPLETIONS),
                          (False, "decode_hang_headers", COMPLETIONS),
                          (False, "decode_hang", COMPLETIONS)]
        mid_stream = [(True, "decode_hang", COMPLETIONS), (True, "decode_hang", CHAT)]
        mid_body = [(False, "decode_hang_body", COMPLETIONS)]

        def run(case):
            stream, fault, path = case
            status = 200 if case in mid_stream else 504
            return self.assert_outcome(self.port, completion(4, stream, fault, chat=path == CHAT),
                                       "error", path=path, status=status)

        messages = concurrently(run, before_headers + mid_stream + mid_body)
        for message in messages[len(before_headers):len(before_headers) + len(mid_stream)]:
            self.assertIn("sent nothing", message)
        hung = 2 * len(before_headers) + len(mid_stream) + len(mid_body)
        wait_until(lambda: self.disconnects(self.cluster.decoders) == hung, 10,
                   message="the proxy left hung decode connections open",
                   describe=lambda: [mock_stats(m.port) for m in self.cluster.decoders])
        self.assert_idle()

    def test_slow_stream_is_not_cut(self):
        # Tokens every 0.5 s for 7 tokens: longer than the 2 s idle timeout in total, but no gap
        # comes near it. The timeout bounds a gap, not the stream.
        c = self.start_cluster(decode_args=("--token-interval-ms", "500"))
        self.assert_outcome(c.port, completion(7, True), "complete")
        self.assert_idle(c)


if __name__ == "__main__":
    unittest.main()
