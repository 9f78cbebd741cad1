"""Outlier ejection: --eject-after consecutive failures take a backend out of rotation for
--eject-seconds (doubling while its probes fail); a successful GET /v1/models probe brings it back.
/healthcheck lists each instance's state, /metrics shows glm_proxy_backend_healthy 0 and
glm_proxy_ejections_total, and a role with every instance ejected answers a fast 503 with
Retry-After.

No timing assertions: states that depend on the clock are polled with a generous deadline, and
"fast" is shown by the backends not being contacted at all.

Run by hand: cd tests/e2e && python3 -m unittest -v test_ejection
"""

import json
import sys
import unittest

import harness
from harness import (ClusterTestCase, closed_port, closed_ports, healthcheck, mock_stats,
                     post_json, stream, wait_until)
from test_metrics import (check_consistency, promtool_command, run_promtool, scrape,
                          scrape_after)

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"
OUT_OF_ROTATION = ("ejected", "probing")


def addr(port):
    return f"127.0.0.1:{port}"


def start_mock_on(port, name):
    """mock-vllm on a given port (a backend coming back where it was)."""
    p = harness.Process(name, [harness.MOCK_VLLM_BIN, "--host", "127.0.0.1", "--port", str(port),
                               "--engine-id", name], env=harness.clean_env())
    try:
        p.wait_listening()
    except Exception:
        p.stop()
        p.close_log()
        raise
    return p


class EjectionCase(ClusterTestCase):
    """Processes started by the test itself; all stopped (the proxy first) at cleanup, with their
    logs printed when the test failed."""

    auto_cluster = False

    def setUp(self):
        super().setUp()
        self.procs = []
        self.addCleanup(self.stop_procs)

    def spawn(self, fn, *args, **kwargs):
        p = fn(*args, **kwargs)
        self.procs.insert(0, p)  # the proxy stops before its backends
        return p

    def stop_procs(self):
        for p in self.procs:
            try:
                p.stop()
            except Exception as e:  # noqa: BLE001 - keep stopping the others
                print(f"stopping {p.name}: {e}", file=sys.stderr)
        if self._failed():
            for p in self.procs:
                sys.stderr.write(f"\n----- {p.name} (port {p.port}, exit {p.proc.returncode}) "
                                 f"{' '.join(p.argv)}\n{p.read_log()}")
        for p in self.procs:
            p.close_log()

    def start_proxy(self, prefill_ports, decode_ports, eject_seconds, extra=()):
        args = ["--eject-after", "3", "--eject-seconds", str(eject_seconds),
                "--max-retries", "3", "--retry-delay", "0.001"] + list(extra)
        return self.spawn(harness.start_proxy, prefill_ports, decode_ports, args)

    # -- state
    def instance(self, port, role, backend_port):
        h = healthcheck(port)
        found = [i for i in h["instances"]
                 if i["role"] == role and i["address"] == addr(backend_port)]
        self.assertEqual(len(found), 1, h)
        return found[0]

    def wait_state(self, port, role, backend_port, states, timeout=30.0):
        return wait_until(lambda: self.instance(port, role, backend_port)["state"] in states,
                          timeout, message=f"{role} {backend_port} not in {states}",
                          describe=lambda: healthcheck(port))

    def assert_idle(self, port):
        """request_num and every backend's load back to 0 (polled: a request is released just
        after its answer is written)."""
        def idle():
            h = healthcheck(port)
            m = scrape(port)
            return (h["request_num"] == 0 and all(i["inflight"] == 0 for i in h["instances"])
                    and all(v == 0 for _, v in m.find("glm_proxy_backend_load"))
                    and all(v == 0 for _, v in m.find("glm_proxy_backend_inflight")))
        wait_until(idle, 15, message="load left on the balancer",
                   describe=lambda: (healthcheck(port), scrape(port).text))

    def assert_metrics_clean(self, port):
        m = scrape(port)
        check_consistency(self, m)
        argv = promtool_command()
        if argv is not None:
            code, out = run_promtool(argv, m.text)
            self.assertIn(code, (0, 3), f"promtool check metrics exit {code}:\n{out}")
        return m

    def completion(self, port, **extra):
        body = {"prompt": "hello there", "max_tokens": 2}
        body.update(extra)
        return post_json(port, COMPLETIONS, body)


class DeadDecoderTests(EjectionCase):
    """A dead decoder listed first (idle ties go to it) beside a live one."""

    def setUp(self):
        super().setUp()
        self.prefiller = self.spawn(harness.start_mock, name="prefill-0", engine_id="prefill-0")
        self.live = self.spawn(harness.start_mock, name="decode-live", engine_id="decode-live")

    def test_dead_decoder_is_ejected_and_traffic_goes_to_the_live_one(self):
        dead = closed_port()
        proxy = self.start_proxy([self.prefiller.port], [dead, self.live.port], 0.5)
        port = proxy.port

        # Each of the first three requests tries the dead decoder, then retries on the live one.
        for i in range(3):
            status, _, body = self.completion(port)
            self.assertEqual(status, 200, body)
        info = self.instance(port, "decode", dead)
        self.assertIn(info["state"], OUT_OF_ROTATION, info)
        self.assertGreaterEqual(info["ejections"], 1, info)
        self.assertGreaterEqual(info["consecutive_failures"], 3, info)
        live = self.instance(port, "decode", self.live.port)
        self.assertEqual((live["state"], live["ejections"]), ("active", 0), live)
        self.assertEqual(healthcheck(port)["status"], "ok")

        # From now on nothing goes to the dead one: no error, no retry, streams and chat alike.
        for i in range(6):
            status, _, events = stream(port, COMPLETIONS,
                                       {"prompt": "more", "max_tokens": 3, "stream": True})
            self.assertEqual(status, 200, events)
            self.assertEqual(events[-1], "[DONE]", events)
        status, _, body = post_json(port, CHAT, {"messages": [{"role": "user", "content": "hi"}],
                                                 "max_tokens": 2})
        self.assertEqual(status, 200, body)
        self.assertEqual(mock_stats(self.live.port)["decode"], 3 + 6 + 1)

        m = self.assert_metrics_clean(port)
        self.assertEqual(m.value("glm_proxy_upstream_errors_total", role="decode",
                                 backend=addr(dead), kind="refused"), 3, m.text)
        self.assertEqual(m.value("glm_proxy_retries_total", role="decode"), 3, m.text)
        self.assertEqual(m.value("glm_proxy_backend_healthy", role="decode", backend=addr(dead)),
                         0, m.text)
        self.assertEqual(m.value("glm_proxy_backend_healthy", role="decode",
                                 backend=addr(self.live.port)), 1, m.text)
        self.assertEqual(m.value("glm_proxy_backend_healthy", role="prefill",
                                 backend=addr(self.prefiller.port)), 1, m.text)
        self.assertGreaterEqual(m.value("glm_proxy_ejections_total", role="decode",
                                        backend=addr(dead)), 1, m.text)
        self.assertEqual(m.value("glm_proxy_ejections_total", role="decode",
                                 backend=addr(self.live.port)), 0, m.text)
        self.assertEqual(m.types.get("glm_proxy_ejections_total"), "counter")

        # Its probes keep failing: it stays out, and its ejections only ever add up.
        seen = m.value("glm_proxy_ejections_total", role="decode", backend=addr(dead))
        wait_until(lambda: scrape(port).value("glm_proxy_ejections_total", role="decode",
                                              backend=addr(dead)) > seen, 30,
                   message="a failed probe did not eject the dead decoder again")
        self.assertIn(self.instance(port, "decode", dead)["state"], OUT_OF_ROTATION)
        self.assertIn("failed its probe", proxy.read_log())
        self.assertIn(f"decode instance {addr(dead)} ejected", proxy.read_log())
        self.assert_idle(port)

    def test_decoder_comes_back_after_a_successful_probe(self):
        # decode-0 listed first, then stopped: connections to its port are refused.
        first = self.spawn(harness.start_mock, name="decode-0", engine_id="decode-0")
        proxy = self.start_proxy([self.prefiller.port], [first.port, self.live.port], 0.5)
        port = proxy.port
        first_port = first.port
        self.assertEqual(first.stop(), 0)

        for i in range(3):
            status, _, body = self.completion(port)
            self.assertEqual(status, 200, body)
        self.assertIn(self.instance(port, "decode", first_port)["state"], OUT_OF_ROTATION)
        self.assertEqual(scrape(port).value("glm_proxy_backend_healthy", role="decode",
                                            backend=addr(first_port)), 0)

        again = self.spawn(start_mock_on, first_port, "decode-0-again")
        info = None

        def back():
            nonlocal info
            info = self.instance(port, "decode", first_port)
            return info["state"] == "active"
        wait_until(back, 60, message="the restarted decoder did not come back",
                   describe=lambda: healthcheck(port))
        self.assertEqual(info["consecutive_failures"], 0, info)
        self.assertGreaterEqual(info["ejections"], 1, info)
        self.assertGreaterEqual(len(harness.mock_requests(again.port)), 1)  # its probe

        # Idle ties go to the instance listed first: it serves again.
        before = mock_stats(self.live.port)["decode"]
        status, _, body = self.completion(port)
        self.assertEqual(status, 200, body)
        self.assertEqual(mock_stats(again.port)["decode"], 1)
        self.assertEqual(mock_stats(self.live.port)["decode"], before)

        m = self.assert_metrics_clean(port)
        self.assertEqual(m.value("glm_proxy_backend_healthy", role="decode",
                                 backend=addr(first_port)), 1, m.text)
        self.assertGreaterEqual(m.value("glm_proxy_ejections_total", role="decode",
                                        backend=addr(first_port)), 1, m.text)
        self.assertIn("answered its probe and is back in rotation", proxy.read_log())
        self.assertEqual(healthcheck(port)["status"], "ok")
        self.assert_idle(port)

    def test_client_errors_do_not_eject(self):
        # A 400 from the decoder is the request's fault (here: context too long).
        proxy = self.start_proxy([self.prefiller.port], [self.live.port], 0.5)
        port = proxy.port
        for i in range(5):
            status, _, body = self.completion(port, mock_fault="decode_error")
            self.assertEqual(status, 400, body)
        info = self.instance(port, "decode", self.live.port)
        self.assertEqual((info["state"], info["consecutive_failures"], info["ejections"]),
                         ("active", 0, 0), info)
        status, _, body = self.completion(port)
        self.assertEqual(status, 200, body)
        self.assert_idle(port)


class FailingPrefillerTests(EjectionCase):
    def test_prefiller_answering_5xx_is_ejected(self):
        # Its GET /v1/models works, so a probe would bring it back: a long ejection keeps it out
        # for the whole test.
        bad = self.spawn(harness.start_mock, "--fail-status", "503", name="prefill-bad")
        good = self.spawn(harness.start_mock, name="prefill-good")
        decoder = self.spawn(harness.start_mock, name="decode-0")
        proxy = self.start_proxy([bad.port, good.port], [decoder.port], 300)
        port = proxy.port
        for i in range(8):
            status, _, body = self.completion(port)
            self.assertEqual(status, 200, body)
        info = self.instance(port, "prefill", bad.port)
        self.assertEqual((info["state"], info["ejections"], info["consecutive_failures"]),
                         ("ejected", 1, 3), info)
        self.assertGreater(info["retry_in_seconds"], 0, info)
        self.assertLessEqual(info["retry_in_seconds"], 300, info)
        self.assertEqual(mock_stats(bad.port)["requests"], 3)
        self.assertEqual(mock_stats(good.port)["prefill"], 8)
        m = self.assert_metrics_clean(port)
        self.assertEqual(m.value("glm_proxy_upstream_errors_total", role="prefill",
                                 backend=addr(bad.port), kind="status"), 3, m.text)
        self.assertEqual(m.value("glm_proxy_ejections_total", role="prefill",
                                 backend=addr(bad.port)), 1, m.text)
        self.assert_idle(port)


class AllPrefillersDeadTests(EjectionCase):
    def test_fast_503_with_retry_after(self):
        decoder = self.spawn(harness.start_mock, name="decode-0")
        dead = closed_ports(2)
        eject_seconds = 60
        proxy = self.start_proxy(dead, [decoder.port], eject_seconds)
        port = proxy.port

        # Requests fail (502) until both prefillers have failed three times each.
        statuses = []
        while len(statuses) < 10:
            status, h, body = self.completion(port)
            statuses.append(status)
            if status == 503:
                break
            self.assertEqual(status, 502, body)
        self.assertEqual(statuses[-1], 503, statuses)
        for p in dead:
            self.assertEqual(self.instance(port, "prefill", p)["state"], "ejected")
        before = scrape_after(port, len(statuses))

        # Now no prefiller is contacted at all: a 503 at once, for streams and chat too.
        for body in ({"prompt": "x", "max_tokens": 2},
                     {"prompt": "x", "max_tokens": 2, "stream": True},
                     ):
            status, h, raw = post_json(port, COMPLETIONS, body)
            self.check_503(status, h, raw, eject_seconds)
        status, h, raw = post_json(port, CHAT, {"messages": [{"role": "user", "content": "hi"}]})
        self.check_503(status, h, raw, eject_seconds)

        scrape_after(port, len(statuses) + 3)
        after = self.assert_metrics_clean(port)
        self.assertEqual(after.total("glm_proxy_upstream_errors_total"),
                         before.total("glm_proxy_upstream_errors_total"), after.text)
        self.assertEqual(after.value("glm_proxy_refusals_total", reason="no_instance"),
                         before.value("glm_proxy_refusals_total", reason="no_instance") + 3,
                         after.text)
        for p in dead:
            self.assertEqual(after.value("glm_proxy_backend_healthy", role="prefill",
                                         backend=addr(p)), 0, after.text)
            self.assertEqual(after.value("glm_proxy_ejections_total", role="prefill",
                                         backend=addr(p)), 1, after.text)
        self.assertEqual(mock_stats(decoder.port)["requests"], 0)

        h = healthcheck(port)
        self.assertEqual(h["status"], "degraded", h)
        self.assertEqual((h["prefill_instances"], h["decode_instances"]), (2, 1), h)
        self.assert_idle(port)

    def check_503(self, status, h, raw, eject_seconds):
        self.assertEqual(status, 503, raw)
        self.assertTrue(h.get("content-type", "").startswith("application/json"), h)
        retry_after = int(h["retry-after"])
        self.assertGreaterEqual(retry_after, 1, h)
        self.assertLessEqual(retry_after, eject_seconds, h)
        err = json.loads(raw)["error"]
        self.assertEqual(err["code"], 503, err)
        self.assertIn("no prefill instance", err["message"], err)


if __name__ == "__main__":
    unittest.main()
