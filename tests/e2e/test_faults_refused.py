"""Fault injection: backends that refuse connections (nothing listens on the port).

Run by hand: cd tests/e2e && python3 -m unittest -v test_faults_refused
"""

import concurrent.futures
import unittest

from fault_case import COMPLETIONS, NO_EJECTION, FaultCase, completion
from faults_common import check_json_error, post, wait_no_load
from harness import closed_ports, mock_stats

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


if __name__ == "__main__":
    unittest.main()
