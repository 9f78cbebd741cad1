"""Parity features of glm-proxy: the reference proxy's other endpoints, instance management,
retries onto another instance, cached-token rewriting, recompute, SSE framing however the bytes
arrive, upstream errors, a burst of client disconnects, IPv6 and host-name backends.

Behaviour under test: /work/shared/reference/pd-proxy-behaviour.md. Every test ends with the
proxy's /healthcheck request_num back to 0.

Run by hand: cd tests/e2e && python3 -m unittest -v test_parity
"""

import concurrent.futures
import json
import re
import sys
import threading
import time
import unittest

import harness
from harness import (ClusterTestCase, FakeResponse, FakeServer, body_bytes, closed_port,
                     closed_ports, get, healthcheck, mock_requests, mock_stats, open_raw,
                     parse_sse, post_json, read_until, stream, stream_raw, wait_until)

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"
PROBE_ARGS = ("--waiting-retry-interval", "0.2", "--max-waiting-retries", "2")
TOKEN_EVENT_RE = rb"data:[^\n]*tok0[^\n]*\n\r?\n"


def tokens_text(n, start=0):
    return "".join(f" tok{i}" for i in range(start, start + n))


def strict_loads(data):
    """json.loads that rejects duplicate keys (a rewritten body must not repeat a member)."""

    def no_duplicates(pairs):
        seen = {}
        for k, v in pairs:
            if k in seen:
                raise ValueError(f"duplicate key {k!r} in {data!r}")
            seen[k] = v
        return seen

    if isinstance(data, (bytes, bytearray)):
        data = bytes(data).decode("utf-8")
    return json.loads(data, object_pairs_hook=no_duplicates)


def error_message(body):
    """The message of a JSON error body, in vLLM's shape or the reference's {"error": "..."}."""
    doc = strict_loads(body)
    err = doc.get("error")
    return err.get("message") if isinstance(err, dict) else err


def addr(port, host="127.0.0.1"):
    return f"{host}:{port}"


def backend_args(prefill, decode):
    """--prefiller-* / --decoder-* arguments from lists of (host, port)."""
    out = []
    for flag, items in (("prefiller", prefill), ("decoder", decode)):
        if items:
            out += [f"--{flag}-hosts"] + [h for h, _ in items]
            out += [f"--{flag}-ports"] + [str(p) for _, p in items]
    return out


def local(*ports):
    return [("127.0.0.1", p) for p in ports]


class ParityCase(ClusterTestCase):
    """No cluster by default: tests start what they need (cluster, single mocks, fakes, proxies);
    everything is stopped at cleanup and every log printed if the test failed."""

    auto_cluster = False

    def setUp(self):
        super().setUp()
        self._own = []
        self.addCleanup(self._stop_own)

    def spawn_mock(self, *args, name="mock", host="127.0.0.1"):
        p = harness.start_mock(*args, name=name, engine_id=name, host=host)
        self._own.append(p)
        return p

    def spawn_proxy(self, args, name="glm-proxy"):
        p = harness.start_proxy_args(args, name=name)
        self._own.insert(0, p)  # proxies stop before their backends
        return p

    def fake(self, handler):
        f = FakeServer(handler)
        self.addCleanup(f.close)
        return f

    def _stop_own(self):
        for p in self._own:
            try:
                p.stop()
            except Exception as e:  # noqa: BLE001 - keep stopping the others
                print(f"stopping {p.name}: {e}", file=sys.stderr)
        if self._failed():
            for p in self._own:
                sys.stderr.write(f"\n----- {p.name} (port {p.port}, exit {p.proc.returncode}) "
                                 f"{' '.join(p.argv)}\n{p.read_log()}")
        for p in self._own:
            p.close_log()

    def wait_idle(self, port, timeout=15.0):
        wait_until(lambda: healthcheck(port)["request_num"] == 0, timeout,
                   message="request_num did not return to 0",
                   describe=lambda: healthcheck(port))

    def assert_completion(self, status, h, body, n, chat=False, start=0):
        self.assertEqual(status, 200, f"body {body!r}")
        self.assertEqual(h.get("content-type"), "application/json")
        doc = strict_loads(body)
        choice = doc["choices"][0]
        text = choice["message"]["content"] if chat else choice["text"]
        self.assertEqual(text, tokens_text(n, start), f"body {body!r}")
        return doc

    def assert_token_events(self, events, n, chat=False):
        """events: the JSON events before [DONE] (and before the usage chunk if any)."""
        texts = []
        for e in events:
            chunk = strict_loads(e)
            self.assertNotIn("error", chunk, f"events {events!r}")
            self.assertNotIn("recomputed", e, f"events {events!r}")
            choice = chunk["choices"][0]
            texts.append(choice["delta"].get("content") if chat else choice["text"])
        self.assertEqual(texts, [f" tok{i}" for i in range(n)], f"events {events!r}")

    def assert_done_once_at_end(self, events):
        self.assertGreaterEqual(len(events), 1, "no SSE event at all")
        self.assertEqual(events[-1], "[DONE]", f"events {events!r}")
        self.assertEqual(events.count("[DONE]"), 1, f"events {events!r}")

    def hold_decoder(self, port, body=None):
        """Opens a stream that reaches a decoder and then hangs (mock_fault decode_hang): the
        chosen decoder stays loaded until the returned socket is closed."""
        sock = open_raw(port, "POST", COMPLETIONS, body or {
            "prompt": "hold", "max_tokens": 4, "stream": True, "mock_fault": "decode_hang"})
        try:
            read_until(sock, lambda b: re.search(TOKEN_EVENT_RE, b))
        except Exception:
            sock.close()
            raise
        return sock


# ----------------------------------------------------------------------------------------------
# /v1/models, /reset_prefix_cache


class ModelsAndResetTests(ParityCase):
    def test_models_first_backend_answers(self):
        p = self.spawn_mock("--model", "model-p", name="prefill-0")
        d = self.spawn_mock("--model", "model-d", name="decode-0")
        proxy = self.spawn_proxy(backend_args(local(p.port), local(d.port)))
        status, h, body = get(proxy.port, "/v1/models")
        self.assertEqual(status, 200, body)
        self.assertTrue(h.get("content-type", "").startswith("application/json"), h)
        direct = get(p.port, "/v1/models")[2]
        self.assertEqual(strict_loads(body), strict_loads(direct))
        self.assertEqual(strict_loads(body)["data"][0]["id"], "model-p")
        self.wait_idle(proxy.port)

    def test_models_falls_back_to_decoder(self):
        d = self.spawn_mock("--model", "model-d", name="decode-0")
        dead = closed_port()
        proxy = self.spawn_proxy(backend_args(local(dead), local(d.port)))
        status, h, body = get(proxy.port, "/v1/models")
        self.assertEqual(status, 200, body)
        self.assertEqual(strict_loads(body), strict_loads(get(d.port, "/v1/models")[2]))
        self.wait_idle(proxy.port)

    def test_models_all_backends_dead(self):
        dp, dd = closed_ports(2)
        proxy = self.spawn_proxy(backend_args(local(dp), local(dd)))
        status, h, body = get(proxy.port, "/v1/models")
        self.assertEqual(status, 503, body)
        self.assertTrue(h.get("content-type", "").startswith("application/json"), h)
        self.assertEqual(strict_loads(body), {
            "error": "All backend instances failed to serve /v1/models",
            "failed": [addr(dp), addr(dd)]})
        self.wait_idle(proxy.port)

    def test_reset_prefix_cache_reaches_every_instance(self):
        c = self.start_cluster(prefillers=2, decoders=2)
        status, h, body = post_json(c.port, "/reset_prefix_cache?foo=bar", b"")
        self.assertEqual(status, 200, body)
        self.assertEqual(body, b"")
        for m in c.mocks:
            with self.subTest(mock=m.name):
                got = [(r["method"], r["target"]) for r in mock_requests(m.port)]
                self.assertEqual(got, [("POST", "/reset_prefix_cache?foo=bar")])
        c.wait_idle()

    def test_reset_prefix_cache_with_dead_backend(self):
        p = self.spawn_mock(name="prefill-0")
        d = self.spawn_mock(name="decode-0")
        dead = closed_port()
        proxy = self.spawn_proxy(backend_args(local(p.port, dead), local(d.port)))
        status, h, body = post_json(proxy.port, "/reset_prefix_cache?foo=bar", b"")
        self.assertEqual(status, 500, body)
        self.assertTrue(h.get("content-type", "").startswith("application/json"), h)
        self.assertEqual(strict_loads(body), {"failed": [f"http://{addr(dead)}"]})
        for m in (p, d):
            got = [(r["method"], r["target"]) for r in mock_requests(m.port)]
            self.assertEqual(got, [("POST", "/reset_prefix_cache?foo=bar")], m.name)
        self.wait_idle(proxy.port)


# ----------------------------------------------------------------------------------------------
# /instances/add, /instances/remove


class InstanceTests(ParityCase):
    def small_cluster(self, **kw):
        kw.setdefault("prefillers", 1)
        kw.setdefault("decoders", 1)
        kw.setdefault("proxy_args", PROBE_ARGS)
        return self.start_cluster(**kw)

    def counts(self, port):
        h = healthcheck(port)
        return h["prefill_instances"], h["decode_instances"]

    def test_remove_takes_back_a_pending_instance(self):
        # A mistyped /instances/add (nothing listens there) is pending while its probes fail;
        # /instances/remove cancels it at once instead of answering 404 until they give up.
        c = self.small_cluster()
        typo = addr(closed_port())
        status, h, body = post_json(c.port, "/instances/add",
                                    {"type": "prefill", "instances": [typo]})
        self.assertEqual(status, 200, body)
        pending = [i for i in healthcheck(c.port)["instances"] if i["state"] == "pending"]
        self.assertEqual([i["address"] for i in pending], [typo])
        status, h, body = post_json(c.port, "/instances/remove",
                                    {"type": "prefill", "instances": [typo]})
        self.assertEqual(status, 200, body)
        self.assertIn("are removed", strict_loads(body)["message"])
        self.assertEqual([i for i in healthcheck(c.port)["instances"] if i["state"] == "pending"],
                         [])
        self.assertEqual(self.counts(c.port), (1, 1))

    def test_add_decoder_string_form_then_used(self):
        c = self.small_cluster()
        new = self.spawn_mock(name="decode-new")
        status, h, body = post_json(c.port, "/instances/add",
                                    {"type": "decode", "instances": addr(new.port)})
        self.assertEqual(status, 200, body)
        doc = strict_loads(body)
        self.assertEqual(doc, {
            "message": f"Instances ['{addr(new.port)}'] are waiting to be added.",
            "current_prefill_instances": [addr(p) for p in c.prefill_ports],
            "current_decode_instances": [addr(p) for p in c.decode_ports]})
        wait_until(lambda: self.counts(c.port) == (1, 2), 5,
                   message="the new decoder was not added", describe=lambda: healthcheck(c.port))
        probes = [r for r in mock_requests(new.port) if r["target"] == "/v1/models"]
        self.assertGreaterEqual(len(probes), 1, "the new decoder was never probed")
        self.assertEqual(probes[0]["method"], "GET")

        # The old decoder is busy with a hanging stream: the next request goes to the new one.
        sock = self.hold_decoder(c.port)
        try:
            self.assertEqual(mock_stats(c.decoders[0].port)["decode"], 1)
            status, h, body = post_json(c.port, COMPLETIONS, {"prompt": "x", "max_tokens": 2})
            self.assert_completion(status, h, body, 2)
            self.assertEqual(mock_stats(new.port)["decode"], 1, "the new decoder was not used")
        finally:
            sock.close()
        c.wait_idle()

    def test_add_list_form_failing_instance_dropped(self):
        c = self.small_cluster()
        new_d = self.spawn_mock(name="decode-new")
        new_p = self.spawn_mock(name="prefill-new")
        failing = self.fake(lambda r: FakeResponse(503, "text/plain", [b"not ready"],
                                                   chunked=False))
        dead = closed_port()
        listed = [addr(new_d.port), addr(failing.port), addr(dead)]
        status, h, body = post_json(c.port, "/instances/add",
                                    {"type": "decode", "instances": listed})
        self.assertEqual(status, 200, body)
        doc = strict_loads(body)
        self.assertEqual(doc["message"], "Instances [" + ", ".join(f"'{a}'" for a in listed)
                         + "] are waiting to be added.")
        self.assertEqual(doc["current_decode_instances"], [addr(p) for p in c.decode_ports])
        status, h, body = post_json(c.port, "/instances/add",
                                    {"type": "prefill", "instances": [addr(new_p.port)]})
        self.assertEqual(status, 200, body)
        self.assertEqual(strict_loads(body)["message"],
                         f"Instances ['{addr(new_p.port)}'] are waiting to be added.")

        wait_until(lambda: self.counts(c.port) == (2, 2), 5,
                   message="the reachable instances were not added",
                   describe=lambda: healthcheck(c.port))
        # --max-waiting-retries 2: two failed probes, then the instance is dropped for good.
        wait_until(lambda: len(failing.recorded("GET", "/v1/models")) >= 2, 5,
                   message="the failing instance was not probed twice",
                   describe=lambda: failing.requests)
        deadline = time.monotonic() + 1.2  # six probe intervals
        while time.monotonic() < deadline:
            self.assertEqual(self.counts(c.port), (2, 2), "a failing instance was added")
            time.sleep(0.05)
        self.assertEqual(len(failing.recorded("GET", "/v1/models")), 2,
                         "the failing instance was probed more than --max-waiting-retries times")
        self.assertEqual(len(failing.requests), 2, failing.requests)
        # The added instances are listed after the configured ones (adding a known instance
        # again only reads the lists).
        status, h, body = post_json(c.port, "/instances/add",
                                    {"type": "decode", "instances": addr(c.decode_ports[0])})
        self.assertEqual(status, 200, body)
        doc = strict_loads(body)
        self.assertEqual(doc["current_decode_instances"],
                         [addr(c.decode_ports[0]), addr(new_d.port)])
        self.assertEqual(doc["current_prefill_instances"],
                         [addr(c.prefill_ports[0]), addr(new_p.port)])
        c.wait_idle()

    def test_add_alias_of_known_instance_not_added_again(self):
        c = self.small_cluster()
        d, p = c.decode_ports[0], c.prefill_ports[0]
        for kind, text in (("decode", f"localhost:{d}"), ("decode", f"0.0.0.0:{d}"),
                           ("prefill", f"localhost:{p}")):
            status, h, body = post_json(c.port, "/instances/add",
                                        {"type": kind, "instances": text})
            self.assertEqual(status, 200, body)
        deadline = time.monotonic() + 1.0  # five probe intervals
        while time.monotonic() < deadline:
            self.assertEqual(self.counts(c.port), (1, 1), "a known instance was added again")
            time.sleep(0.05)
        status, h, body = post_json(c.port, "/instances/add",
                                    {"type": "decode", "instances": addr(d)})
        self.assertEqual(status, 200, body)
        doc = strict_loads(body)
        self.assertEqual(doc["current_decode_instances"], [addr(d)])
        self.assertEqual(doc["current_prefill_instances"], [addr(p)])
        self.assertNotIn(addr(d), doc["message"], "a known instance was queued again")
        c.wait_idle()

    def test_unknown_type_is_400(self):
        c = self.small_cluster()
        for path in ("/instances/add", "/instances/remove"):
            with self.subTest(path=path):
                status, h, body = post_json(c.port, path,
                                            {"type": "x", "instances": addr(c.decode_ports[0])})
                self.assertEqual(status, 400, body)
                self.assertTrue(h.get("content-type", "").startswith("application/json"), h)
                self.assertEqual(error_message(body), "Instance type 'x' is not supported. "
                                 "Only 'prefill' and 'decode' are allowed.")
        self.assertEqual(self.counts(c.port), (1, 1))
        c.wait_idle()

    def test_remove_idle_instance_at_once(self):
        c = self.small_cluster(decoders=2)
        d0, d1 = c.decoders
        status, h, body = post_json(c.port, "/instances/remove",
                                    {"type": "decode", "instances": [addr(d1.port)]})
        self.assertEqual(status, 200, body)
        doc = strict_loads(body)
        self.assertIn(f"'{addr(d1.port)}'", doc["message"])
        self.assertIn("removed", doc["message"])
        self.assertNotIn("isolated", doc["message"])
        self.assertEqual(doc["current_decode_instances"], [addr(d0.port)])
        self.assertEqual(self.counts(c.port), (1, 1))
        # Even with the remaining decoder loaded, the removed one is never chosen.
        sock = self.hold_decoder(c.port)
        try:
            status, h, body = post_json(c.port, COMPLETIONS, {"prompt": "x", "max_tokens": 2})
            self.assert_completion(status, h, body, 2)
        finally:
            sock.close()
        self.assertEqual(mock_stats(d1.port)["requests"], 0, "a removed decoder was used")
        self.assertEqual(mock_stats(d0.port)["decode"], 2)
        c.wait_idle()

    def test_remove_during_stream_isolates_then_removes(self):
        c = self.small_cluster(decoders=2, decode_args=("--token-interval-ms", "100"))
        result = {}

        def slow():
            result["r"] = stream(c.port, COMPLETIONS,
                                 {"prompt": "slow", "max_tokens": 10, "stream": True})

        t = threading.Thread(target=slow)
        t.start()
        try:
            busy = wait_until(lambda: next((d for d in c.decoders
                                            if mock_stats(d.port)["active_streams"] == 1), None),
                              5, message="the slow stream never reached a decoder")
            other = next(d for d in c.decoders if d is not busy)
            status, h, body = post_json(c.port, "/instances/remove",
                                        {"type": "decode", "instances": addr(busy.port)})
            self.assertEqual(status, 200, body)
            doc = strict_loads(body)
            self.assertEqual(doc["message"], f"Instances ['{addr(busy.port)}'] are isolated and "
                             "waiting to be removed.")
            self.assertNotIn(addr(busy.port), doc["current_decode_instances"])
            self.assertIn(addr(other.port), doc["current_decode_instances"])
            # New requests while the stream goes on: never the isolated decoder.
            for i in range(3):
                status, h, body = post_json(c.port, COMPLETIONS,
                                            {"prompt": f"new {i}", "max_tokens": 1})
                self.assert_completion(status, h, body, 1)
            self.assertTrue(t.is_alive(), "the slow stream ended too early for this test")
        finally:
            t.join(30)
        status, h, events = result["r"]
        self.assertEqual(status, 200, events)
        self.assert_done_once_at_end(events)
        self.assert_token_events(events[:-1], 10)
        self.assertEqual(mock_stats(busy.port)["decode"], 1, "an isolated decoder was chosen")
        self.assertEqual(mock_stats(other.port)["decode"], 3)
        c.wait_idle()
        self.assertEqual(self.counts(c.port), (1, 1))
        status, h, body = post_json(c.port, COMPLETIONS, {"prompt": "after", "max_tokens": 1})
        self.assert_completion(status, h, body, 1)
        self.assertEqual(mock_stats(busy.port)["decode"], 1, "a removed decoder was chosen")
        c.wait_idle()


# ----------------------------------------------------------------------------------------------
# Retries onto another instance


class FailoverTests(ParityCase):
    """A dead instance listed first: ties go to it, so a retry that chooses again must not pick
    it forever (spec: a connection error is retried; the next choice may go elsewhere)."""

    def run_requests(self, port):
        for i in range(4):
            if i % 2:
                status, h, events = stream(port, COMPLETIONS,
                                           {"prompt": f"s{i}", "max_tokens": 3, "stream": True})
                self.assertEqual(status, 200, f"request {i}: {events!r}")
                self.assert_done_once_at_end(events)
                self.assert_token_events(events[:-1], 3)
            else:
                status, h, body = post_json(port, COMPLETIONS, {"prompt": f"n{i}",
                                                                "max_tokens": 2})
                self.assert_completion(status, h, body, 2)
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda i: post_json(port, COMPLETIONS, {
                "prompt": f"c{i}", "max_tokens": 2}), range(6)))
        for i, (status, h, body) in enumerate(results):
            with self.subTest(concurrent=i):
                self.assert_completion(status, h, body, 2)
        self.wait_idle(port)

    def test_dead_prefiller_among_two(self):
        p = self.spawn_mock(name="prefill-live")
        d = self.spawn_mock(name="decode-0")
        dead = closed_port()
        proxy = self.spawn_proxy(backend_args(local(dead, p.port), local(d.port))
                                 + ["--max-retries", "3", "--retry-delay", "0.001"])
        self.run_requests(proxy.port)
        self.assertEqual(mock_stats(p.port)["prefill"], 10)

    def test_dead_decoder_among_two(self):
        p = self.spawn_mock(name="prefill-0")
        d = self.spawn_mock(name="decode-live")
        dead = closed_port()
        proxy = self.spawn_proxy(backend_args(local(p.port), local(dead, d.port))
                                 + ["--max-retries", "3", "--retry-delay", "0.001"])
        self.run_requests(proxy.port)
        self.assertEqual(mock_stats(d.port)["decode"], 10)


# ----------------------------------------------------------------------------------------------
# cached_tokens


class CachedTokensTests(ParityCase):
    def setUp(self):
        super().setUp()
        self.c = self.start_cluster(prefillers=1, decoders=1, prefill_args=("--cached-tokens", "7"))

    def check_usage(self, usage, prompt_tokens, n):
        self.assertEqual(usage["prompt_tokens"], prompt_tokens, usage)
        self.assertEqual(usage["completion_tokens"], n, usage)
        self.assertEqual(usage["total_tokens"], prompt_tokens + n, usage)
        self.assertEqual(usage["prompt_tokens_details"], {"cached_tokens": 7}, usage)

    def test_non_stream_completion(self):
        status, h, body = post_json(self.c.port, COMPLETIONS,
                                    {"prompt": "one two three four five six seven eight nine",
                                     "max_tokens": 3})
        doc = self.assert_completion(status, h, body, 3)
        self.check_usage(doc["usage"], 9, 3)
        self.c.wait_idle()

    def test_non_stream_chat(self):
        status, h, body = post_json(self.c.port, CHAT, {
            "messages": [{"role": "user", "content": "a b c d e f g h i j"}], "max_tokens": 2})
        doc = self.assert_completion(status, h, body, 2, chat=True)
        self.check_usage(doc["usage"], 10, 2)
        self.c.wait_idle()

    def test_stream_usage_chunk(self):
        for path, chat in ((COMPLETIONS, False), (CHAT, True)):
            with self.subTest(path=path):
                body = {"max_tokens": 4, "stream": True,
                        "stream_options": {"include_usage": True}}
                if chat:
                    body["messages"] = [{"role": "user", "content": "w1 w2 w3 w4 w5 w6 w7 w8"}]
                else:
                    body["prompt"] = "w1 w2 w3 w4 w5 w6 w7 w8"
                status, h, events = stream(self.c.port, path, body)
                self.assertEqual(status, 200, events)
                self.assert_done_once_at_end(events)
                usage = strict_loads(events[-2])
                self.assertEqual(usage["choices"], [], events)
                self.check_usage(usage["usage"], 8, 4)
                self.assert_token_events(events[:-2], 4, chat=chat)
                self.c.wait_idle()

    def test_stream_without_usage_unchanged(self):
        status, h, events = stream(self.c.port, COMPLETIONS,
                                   {"prompt": "a b", "max_tokens": 3, "stream": True})
        self.assertEqual(status, 200, events)
        self.assert_done_once_at_end(events)
        self.assert_token_events(events[:-1], 3)
        self.c.wait_idle()


# ----------------------------------------------------------------------------------------------
# Recompute (mock_fault recompute: the decoder is preempted after max(1, n/2) tokens)


class RecomputeTests(ParityCase):
    def setUp(self):
        super().setUp()
        self.c = self.start_cluster(prefillers=1, decoders=1)

    def bodies(self, mock):
        return [strict_loads(body_bytes(r)) for r in mock_requests(mock.port)
                if r["target"] in (COMPLETIONS, CHAT)]

    def check_rounds(self, chat, original):
        prefills = self.bodies(self.c.prefillers[0])
        decodes = self.bodies(self.c.decoders[0])
        self.assertEqual(len(prefills), 2, prefills)
        self.assertEqual(len(decodes), 2, decodes)
        key = "messages" if chat else "prompt"
        self.assertEqual(prefills[0][key], original)
        self.assertEqual(decodes[0][key], original)
        if chat:
            expected = json.loads(json.dumps(original))
            expected[-1]["content"] += " tok0 tok1 tok2 tok3"
        else:
            expected = original + " tok0 tok1 tok2 tok3"
        self.assertEqual(prefills[1][key], expected)
        self.assertEqual(prefills[1]["max_tokens"], 1)
        self.assertEqual(decodes[1][key], expected)
        # 8 - 5 chunks seen (4 tokens and the recomputed one) + 1 recompute
        self.assertEqual(decodes[1]["max_tokens"], 4, decodes[1])
        self.assertEqual(decodes[1].get("mock_fault"), "recompute")
        self.assertEqual(decodes[1]["kv_transfer_params"]["remote_engine_id"], "prefill-0")

    def test_stream_completion(self):
        status, h, raw = stream_raw(self.c.port, COMPLETIONS, {
            "model": "mock-model", "prompt": "hello world", "max_tokens": 8, "stream": True,
            "mock_fault": "recompute"})
        self.assertEqual(status, 200, raw)
        self.assertNotIn(b"recomputed", raw)
        events = parse_sse(raw)
        self.assert_done_once_at_end(events)
        self.assert_token_events(events[:-1], 8)
        self.check_rounds(False, "hello world")
        self.c.wait_idle()

    def test_stream_chat_appends_to_last_user_message(self):
        messages = [{"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "first question"},
                    {"role": "assistant", "content": "first answer"},
                    {"role": "user", "content": "second question"}]
        status, h, raw = stream_raw(self.c.port, CHAT, {
            "messages": messages, "max_tokens": 8, "stream": True, "mock_fault": "recompute"})
        self.assertEqual(status, 200, raw)
        self.assertNotIn(b"recomputed", raw)
        events = parse_sse(raw)
        self.assert_done_once_at_end(events)
        self.assert_token_events(events[:-1], 8, chat=True)
        self.check_rounds(True, messages)
        self.c.wait_idle()

    def test_non_stream_completion(self):
        status, h, body = post_json(self.c.port, COMPLETIONS, {
            "prompt": "hello world", "max_tokens": 8, "mock_fault": "recompute"})
        doc = self.assert_completion(status, h, body, 8)
        self.assertNotIn(b"recomputed", body)
        self.assertEqual(doc["choices"][0]["finish_reason"], "length", body)
        self.check_rounds(False, "hello world")
        self.c.wait_idle()

    def test_non_stream_chat(self):
        messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "q1"},
                    {"role": "user", "content": "q2"}]
        status, h, body = post_json(self.c.port, CHAT, {
            "messages": messages, "max_tokens": 8, "mock_fault": "recompute"})
        self.assert_completion(status, h, body, 8, chat=True)
        self.assertNotIn(b"recomputed", body)
        self.check_rounds(True, messages)
        self.c.wait_idle()


# ----------------------------------------------------------------------------------------------
# SSE framing however the bytes arrive: a scripted decoder


def _token_payload(i, last):
    return json.dumps({
        "id": "cmpl-fake", "object": "text_completion", "created": 1700000000,
        "model": "fake-model", "note": "é🙂",
        "choices": [{"index": 0, "text": f" tok{i}", "logprobs": None,
                     "finish_reason": "length" if last else None, "stop_reason": None}]},
        ensure_ascii=False, separators=(",", ":"))


RECOMPUTED_PAYLOAD = json.dumps({
    "id": "cmpl-fake", "object": "text_completion", "created": 1700000000, "model": "fake-model",
    "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": "stop",
                 "stop_reason": "recomputed"}]}, separators=(",", ":"))


class ScriptedDecoder:
    """Answers decode requests like mock-vllm (tokens " tok<i>", recompute after max(1, n/2)
    tokens when mock_fault is recompute and the prompt holds no tok word yet), framed as `style`:
      bytes   - every byte of the stream in its own HTTP chunk, a short pause between;
      single  - the whole stream in one HTTP chunk;
      crlf    - \\r\\n line ends, a ": keep-alive" comment before every event, 7-byte chunks,
                usage with "prompt_tokens_details": null.
    .scripts keeps, per request, the payloads sent and the raw stream."""

    def __init__(self, style):
        self.style = style
        self.scripts = []

    def __call__(self, record):
        body = json.loads(record["body"])
        n = body.get("max_tokens", 16)
        prompt = body["prompt"]
        m = len(re.findall(r"(?<!\S)tok\d+(?!\S)", prompt))
        recompute = body.get("mock_fault") == "recompute" and m == 0
        payloads = []
        if recompute:
            payloads += [_token_payload(i, False) for i in range(max(1, n // 2))]
            payloads.append(RECOMPUTED_PAYLOAD)
        else:
            payloads += [_token_payload(i, i == m + n - 1) for i in range(m, m + n)]
            if (body.get("stream_options") or {}).get("include_usage"):
                p = len(prompt.split())
                details = None if self.style == "crlf" else {"cached_tokens": p}
                payloads.append(json.dumps({
                    "id": "cmpl-fake", "object": "text_completion", "created": 1700000000,
                    "model": "fake-model", "choices": [],
                    "usage": {"prompt_tokens": p, "total_tokens": p + n, "completion_tokens": n,
                              "prompt_tokens_details": details}}, separators=(",", ":")))
        payloads.append("[DONE]")
        le = "\r\n" if self.style == "crlf" else "\n"
        text = ""
        for payload in payloads:
            if self.style == "crlf":
                text += ": keep-alive" + le + le
            text += "data: " + payload + le + le
        raw = text.encode("utf-8")
        self.scripts.append({"request": body, "payloads": payloads, "raw": raw,
                             "recompute": recompute})
        if self.style == "bytes":
            return FakeResponse(pieces=[raw[i:i + 1] for i in range(len(raw))], delay=0.0002)
        if self.style == "single":
            return FakeResponse(pieces=[raw])
        return FakeResponse(pieces=[raw[i:i + 7] for i in range(0, len(raw), 7)], delay=0.0005)


class SseFramingTests(ParityCase):
    def start(self, style):
        self.prefiller = self.spawn_mock("--cached-tokens", "5", name="prefill-0")
        self.decoder = ScriptedDecoder(style)
        self.fake_server = self.fake(self.decoder)
        self.proxy = self.spawn_proxy(
            backend_args(local(self.prefiller.port), local(self.fake_server.port))
            + ["--max-retries", "1"])

    def run_case(self, style, recompute, n=6):
        self.start(style)
        prompt = "a b c"
        body = {"model": "fake-model", "prompt": prompt, "max_tokens": n, "stream": True,
                "stream_options": {"include_usage": True}}
        if recompute:
            body["mock_fault"] = "recompute"
        status, h, raw = stream_raw(self.proxy.port, COMPLETIONS, body)
        self.assertEqual(status, 200, raw)
        self.assertEqual(h.get("content-type"), "text/event-stream; charset=utf-8")
        events = parse_sse(raw)
        scripts = self.decoder.scripts
        self.assertEqual(len(scripts), 2 if recompute else 1, [s["request"] for s in scripts])
        for s in scripts:
            self.assertIn("kv_transfer_params", s["request"])
            self.assertEqual(s["request"]["kv_transfer_params"]["remote_engine_id"], "prefill-0")

        # What the client must see: every token event as sent, the final usage chunk with the
        # prefiller's cached_tokens, one [DONE]; nothing of a preempted stream's ending.
        expected_tokens = []
        for s in scripts:
            expected_tokens += [p for p in s["payloads"]
                                if p != "[DONE]" and p != RECOMPUTED_PAYLOAD
                                and '"choices":[]' not in p]
        self.assert_done_once_at_end(events)
        self.assertEqual(events[:-2], expected_tokens, f"raw {raw!r}")
        self.assert_token_events(events[:-2], n)
        sent_usage = json.loads(scripts[-1]["payloads"][-2])
        expected_usage = json.loads(json.dumps(sent_usage))
        expected_usage["usage"]["prompt_tokens_details"] = {"cached_tokens": 5}
        self.assertEqual(strict_loads(events[-2]), expected_usage, f"raw {raw!r}")
        self.assertNotIn(b"recomputed", raw)
        le = b"\r\n" if style == "crlf" else b"\n"
        for p in expected_tokens:
            # Untouched events pass byte for byte.
            self.assertIn(b"data: " + p.encode("utf-8") + le + le, raw)
        if recompute:
            second = scripts[1]["request"]
            self.assertEqual(second["prompt"], prompt + tokens_text(n // 2))
            self.assertEqual(second["max_tokens"], n - (n // 2 + 1) + 1)
        self.wait_idle(self.proxy.port)
        return raw, scripts

    def test_byte_per_chunk_with_recompute(self):
        self.run_case("bytes", recompute=True)

    def test_byte_per_chunk(self):
        self.run_case("bytes", recompute=False, n=3)

    def test_single_chunk(self):
        self.run_case("single", recompute=False)

    def test_single_chunk_with_recompute(self):
        self.run_case("single", recompute=True)

    def test_crlf_and_keep_alive_comments(self):
        raw, scripts = self.run_case("crlf", recompute=False)
        # Every comment passes unchanged (one before each event, [DONE] included).
        self.assertEqual(raw.count(b": keep-alive\r\n\r\n"), len(scripts[0]["payloads"]), raw)


# ----------------------------------------------------------------------------------------------
# Upstream errors before the first byte


class DecoderErrorTests(ParityCase):
    def test_decoder_500_json_error(self):
        p = self.spawn_mock(name="prefill-0")
        d = self.spawn_mock("--fail-status", "500", name="decode-0")
        # Ejection off: the reference has none, and four 500s in a row would eject the only
        # decoder (test_ejection covers that).
        proxy = self.spawn_proxy(backend_args(local(p.port), local(d.port))
                                 + ["--max-retries", "2", "--retry-delay", "0.001",
                                    "--eject-after", "0"])
        for flag in (False, True):
            with self.subTest(stream=flag):
                body = {"prompt": "x", "max_tokens": 2, "stream": flag}
                expected_status, _, expected = post_json(d.port, COMPLETIONS, body)
                self.assertEqual(expected_status, 500, expected)
                mock_stats_before = mock_stats(d.port)["requests"]
                status, h, got = post_json(proxy.port, COMPLETIONS, body)
                self.assertEqual(status, 500, got)
                self.assertTrue(h.get("content-type", "").startswith("application/json"), h)
                self.assertEqual(strict_loads(got), strict_loads(expected))
                # 500 is retried: max-retries 2 attempts on the decoder.
                self.assertEqual(mock_stats(d.port)["requests"] - mock_stats_before, 2)
                self.wait_idle(proxy.port)

    def test_decoder_text_error_wrapped_as_json(self):
        p = self.spawn_mock(name="prefill-0")
        fake = self.fake(lambda r: FakeResponse(503, "text/plain; charset=utf-8",
                                                [b"overloaded"], chunked=False))
        proxy = self.spawn_proxy(backend_args(local(p.port), local(fake.port))
                                 + ["--max-retries", "1"])
        for i, flag in enumerate((False, True)):
            with self.subTest(stream=flag):
                status, h, body = post_json(proxy.port, COMPLETIONS,
                                            {"prompt": "x", "max_tokens": 2, "stream": flag})
                self.assertEqual(status, 503, body)
                self.assertTrue(h.get("content-type", "").startswith("application/json"), h)
                err = strict_loads(body)["error"]
                self.assertIsInstance(err, dict, body)
                self.assertIn("overloaded", err["message"], body)
                if "code" in err:
                    self.assertEqual(err["code"], 503, body)
                self.assertEqual(len(fake.recorded("POST", COMPLETIONS)), i + 1)
                self.wait_idle(proxy.port)


# ----------------------------------------------------------------------------------------------
# Client disconnects in a burst


class DisconnectBurstTests(ParityCase):
    def test_20_clients_leave_during_slow_streams_workers_2(self):
        c = self.start_cluster(prefillers=1, decoders=2,
                               decode_args=("--token-interval-ms", "100"),
                               proxy_args=("--workers", "2"))
        socks = []
        try:
            for i in range(20):
                socks.append(open_raw(c.port, "POST", COMPLETIONS, {
                    "prompt": f"burst {i}", "max_tokens": 100, "stream": True}))
            for s in socks:
                read_until(s, lambda b: re.search(TOKEN_EVENT_RE, b))
            active = sum(mock_stats(d.port)["active_streams"] for d in c.decoders)
            self.assertEqual(active, 20)
        finally:
            for s in socks:
                s.close()
        wait_until(lambda: sum(mock_stats(d.port)["client_disconnects"]
                               for d in c.decoders) == 20, 10,
                   message="the decoders did not see 20 disconnects",
                   describe=lambda: [mock_stats(d.port) for d in c.decoders])
        c.wait_idle()
        wait_until(lambda: sum(mock_stats(d.port)["active_streams"] for d in c.decoders) == 0,
                   10, message="decoder streams still active")
        status, h, body = post_json(c.port, COMPLETIONS, {"prompt": "after", "max_tokens": 2})
        self.assert_completion(status, h, body, 2)
        c.wait_idle()


# ----------------------------------------------------------------------------------------------
# Backend addresses


class AddressTests(ParityCase):
    def exercise(self, port):
        status, h, events = stream(port, CHAT, {
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True})
        self.assertEqual(status, 200, events)
        self.assert_done_once_at_end(events)
        self.assert_token_events(events[:-1], 3, chat=True)
        status, h, body = post_json(port, COMPLETIONS, {"prompt": "x", "max_tokens": 2})
        self.assert_completion(status, h, body, 2)
        self.wait_idle(port)

    def test_ipv6_decoder(self):
        if not harness.ipv6_loopback_available():
            self.skipTest("no IPv6 loopback")
        p = self.spawn_mock(name="prefill-0")
        d = self.spawn_mock(name="decode-v6", host="::1")
        self.assertEqual(d.host, "::1")
        proxy = self.spawn_proxy(backend_args(local(p.port), [("::1", d.port)]))
        self.exercise(proxy.port)
        got = [r["target"] for r in mock_requests(d.port, host="::1")]
        self.assertEqual(got, [CHAT, COMPLETIONS])

    def test_ipv6_instance_added(self):
        if not harness.ipv6_loopback_available():
            self.skipTest("no IPv6 loopback")
        p = self.spawn_mock(name="prefill-0")
        d = self.spawn_mock(name="decode-v6", host="::1")
        dead = closed_port()
        proxy = self.spawn_proxy(backend_args(local(p.port), local(dead)) + list(PROBE_ARGS))
        status, h, body = post_json(proxy.port, "/instances/add",
                                    {"type": "decode", "instances": [f"[::1]:{d.port}"]})
        self.assertEqual(status, 200, body)
        self.assertEqual(strict_loads(body)["message"],
                         f"Instances ['[::1]:{d.port}'] are waiting to be added.")
        wait_until(lambda: healthcheck(proxy.port)["decode_instances"] == 2, 5,
                   message="the IPv6 decoder was not added")
        status, h, body = post_json(proxy.port, "/instances/remove",
                                    {"type": "decode", "instances": [addr(dead)]})
        self.assertEqual(status, 200, body)
        self.assertEqual(strict_loads(body)["current_decode_instances"], [f"[::1]:{d.port}"])
        self.exercise(proxy.port)
        self.assertEqual(mock_stats(d.port, host="::1")["decode"], 2)

    def test_prefiller_and_decoder_by_host_name(self):
        p = self.spawn_mock(name="prefill-0")
        d = self.spawn_mock(name="decode-0")
        proxy = self.spawn_proxy(backend_args([("localhost", p.port)], [("localhost", d.port)]))
        self.exercise(proxy.port)
        self.assertEqual(mock_stats(p.port)["prefill"], 2)
        self.assertEqual(mock_stats(d.port)["decode"], 2)


if __name__ == "__main__":
    unittest.main()
