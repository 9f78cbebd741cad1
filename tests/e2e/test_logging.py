"""Request ids and logs (issue #5): a sane client X-Request-Id is the request's id end to end,
--log-format json writes one JSON object per line, and every request gets one access line."""

import json
import unittest

from harness import (ClusterTestCase, closed_port, get, mock_requests, post_json,
                     start_proxy_args, stream, wait_until)

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"
UUID_RE = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"


def backend_ids(cluster):
    """Every X-Request-Id the mocks received, per role."""
    def ids(mocks):
        return [r["headers"].get("x-request-id") for m in mocks for r in mock_requests(m.port)
                if r["target"].startswith("/v1/")]
    return ids(cluster.prefillers), ids(cluster.decoders)


class RequestIdTests(ClusterTestCase):
    prefillers = 1
    decoders = 1

    def test_sane_client_id_goes_to_both_backends_and_back(self):
        rid = "client-req_42:A.b"
        status, headers, events = stream(self.port, CHAT, {
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": True},
            headers={"X-Request-Id": rid})
        self.assertEqual(status, 200, events)
        self.assertEqual(headers.get("x-request-id"), rid)
        self.assertEqual(backend_ids(self.cluster), ([rid], [rid]))

    def test_non_stream_answer_echoes_the_id(self):
        rid = "plain-1"
        status, headers, body = post_json(self.port, COMPLETIONS, {"prompt": "x", "max_tokens": 1},
                                          headers={"X-Request-Id": rid})
        self.assertEqual(status, 200, body)
        self.assertEqual(headers.get("x-request-id"), rid)
        self.assertEqual(backend_ids(self.cluster), ([rid], [rid]))

    def test_insane_client_ids_are_replaced(self):
        for bad in ["has space", "quote\"d", "x" * 129, "semi;colon", "{json}", "caf\u00e9"]:
            with self.subTest(bad=bad):
                for m in self.cluster.mocks:
                    post_json(m.port, "/mock/reset", b"")
                status, headers, body = post_json(
                    self.port, COMPLETIONS, {"prompt": "x", "max_tokens": 1},
                    headers={"X-Request-Id": bad.encode("utf-8")})
                self.assertEqual(status, 200, body)
                rid = headers.get("x-request-id")
                self.assertRegex(rid, UUID_RE)
                self.assertEqual(backend_ids(self.cluster), ([rid], [rid]))

    def test_error_answers_carry_the_id(self):
        status, headers, body = post_json(self.port, COMPLETIONS, b"{not json",
                                          headers={"X-Request-Id": "bad-body-7"})
        self.assertEqual(status, 400, body)
        self.assertEqual(headers.get("x-request-id"), "bad-body-7")
        self.assertIn("error", json.loads(body))


class JsonLogTests(ClusterTestCase):
    prefillers = 1
    decoders = 2
    proxy_args = ("--log-format", "json", "--max-retries", "2", "--eject-after", "0")

    def log_objects(self):
        """Every line of the proxy's log parsed as JSON (a line that is not JSON fails)."""
        objects = []
        for line in self.cluster.proxy.read_log().splitlines():
            if not line.strip():
                continue
            try:
                objects.append(json.loads(line))
            except ValueError:
                self.fail(f"log line is not one JSON object: {line!r}")
        return objects

    def access_lines(self):
        return [o for o in self.log_objects() if o.get("type") == "access"]

    def test_every_line_is_json_and_requests_get_one_access_line(self):
        rid = "json-log-1"
        status, _, events = stream(self.port, COMPLETIONS, {
            "prompt": "hello", "max_tokens": 3, "stream": True}, headers={"X-Request-Id": rid})
        self.assertEqual(status, 200, events)
        self.assertEqual(events[-1], "[DONE]")
        get(self.port, "/healthcheck")
        lines = wait_until(lambda: len(self.access_lines()) >= 2 and self.access_lines(),
                           message="two access lines")
        for o in self.log_objects():
            self.assertIn("ts", o)
            self.assertIn("level", o)
        mine = [o for o in lines if o["request_id"] == rid]
        self.assertEqual(len(mine), 1, lines)
        a = mine[0]
        self.assertEqual(a["endpoint"], COMPLETIONS)
        self.assertEqual(a["method"], "POST")
        self.assertEqual(a["status"], 200)
        self.assertEqual(a["ending"], "done")
        self.assertEqual(a["prefiller"], f"127.0.0.1:{self.cluster.prefill_ports[0]}")
        self.assertIn(a["decoder"], [f"127.0.0.1:{p}" for p in self.cluster.decode_ports])
        self.assertGreater(a["prompt_bytes"], 0)
        self.assertIsInstance(a["ttft_ms"], float)
        self.assertGreaterEqual(a["duration_ms"], a["ttft_ms"])
        # Three tokens, then the finish chunk is the mock's last data event before [DONE].
        self.assertGreaterEqual(a["events"], 4)
        health = [o for o in lines if o["endpoint"] == "/healthcheck"]
        self.assertEqual(len(health), 1, lines)
        self.assertEqual(health[0]["status"], 200)

    def test_lines_about_a_request_carry_its_id(self):
        # One decoder is a closed port: each failed attempt is logged, then the retry succeeds on
        # the live one. Every line about a request names it.
        # The closed port is listed first, so with equal loads it is chosen first.
        proxy = start_proxy_args([
            "--prefill", f"127.0.0.1:{self.cluster.prefill_ports[0]}",
            "--decode", f"127.0.0.1:{closed_port()}",
            "--decode", f"127.0.0.1:{self.cluster.decode_ports[0]}",
            "--log-format", "json", "--max-retries", "2", "--eject-after", "0"])
        self.addCleanup(proxy.close_log)
        self.addCleanup(proxy.stop)
        rids = [f"retry-{i}" for i in range(4)]
        for rid in rids:
            status, headers, body = post_json(proxy.port, COMPLETIONS,
                                              {"prompt": "x", "max_tokens": 1},
                                              headers={"X-Request-Id": rid})
            self.assertEqual(headers.get("x-request-id"), rid)
            self.assertEqual(status, 200, body)
        objects = [json.loads(line) for line in proxy.read_log().splitlines() if line.strip()]
        warnings = [o for o in objects if o["level"] == "warning"]
        self.assertTrue(warnings, objects)  # the closed decoder was chosen at least once
        for w in warnings:
            self.assertIn(w.get("request_id"), rids, w)
            self.assertIn("decode attempt", w["msg"])

    def test_endings_are_reported(self):
        c = self.start_cluster(decoders=1, proxy_args=("--log-format", "json", "--max-retries",
                                                       "1", "--eject-after", "0"))
        post_json(c.port, COMPLETIONS, b"[]", headers={"X-Request-Id": "end-rejected"})
        status, _, _ = post_json(c.port, COMPLETIONS, {"prompt": "x", "max_tokens": 1,
                                                       "mock_fault": "decode_error"},
                                 headers={"X-Request-Id": "end-upstream"})
        self.assertEqual(status, 400)  # the decoder's own error, passed through

        def endings():
            objects = [json.loads(line) for line in c.proxy.read_log().splitlines() if line]
            return {o["request_id"]: o["ending"] for o in objects if o.get("type") == "access"}
        got = wait_until(lambda: len(endings()) >= 2 and endings(), message="access lines")
        self.assertEqual(got.get("end-rejected"), "rejected")
        self.assertEqual(got.get("end-upstream"), "upstream_error")


class TextLogTests(ClusterTestCase):
    prefillers = 1
    decoders = 1

    def test_text_access_line(self):
        status, _, body = post_json(self.port, COMPLETIONS, {"prompt": "x", "max_tokens": 2},
                                    headers={"X-Request-Id": "text-1"})
        self.assertEqual(status, 200, body)
        line = wait_until(lambda: next((ln for ln in self.cluster.proxy.read_log().splitlines()
                                        if "[text-1] access" in ln), None),
                          message="access line")
        for field in ["method=POST", "endpoint=/v1/completions", "status=200", "ending=done",
                      f"decoder=127.0.0.1:{self.cluster.decode_ports[0]}", "events=0"]:
            self.assertIn(field, line)


if __name__ == "__main__":
    unittest.main()
