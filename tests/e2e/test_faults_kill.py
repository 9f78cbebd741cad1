"""Fault injection: a backend process killed (SIGKILL) while requests are open.

Run by hand: cd tests/e2e && python3 -m unittest -v test_faults_kill
"""

import unittest

from fault_case import COMPLETIONS, CHAT, FaultCase, completion, finish, start_streams
from faults_common import RawConnection, check_json_error, http_request, post, wait_no_load
from harness import mock_stats, wait_until

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
        c = self.start_cluster(prefillers=1, decoders=2, decode_args=("--token-interval-ms", "50"),
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


if __name__ == "__main__":
    unittest.main()
