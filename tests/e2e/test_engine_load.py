"""Load read from the engines (README "Load from the engines"): glm-proxy scrapes every backend's
/metrics (mock-vllm serves vLLM's format, with load injected through POST /mock/load) and routes
around queues and full KV caches; a failing /metrics changes nothing; --prefill-fallback decode
serves requests when no prefiller can.

Which instance served a request is read from the mocks' own counters (/mock/stats), never from
the proxy. No timing assertions: each step waits until the proxy's /metrics shows what it read.

Run by hand: cd tests/e2e && python3 -m unittest -v test_engine_load
"""

import json
import re
import unittest

from harness import (ClusterTestCase, closed_ports, get, healthcheck, mock_requests,
                     mock_stats, post_json, start_mock, start_proxy, stream, wait_until)

# Short enough to keep the file fast, long enough that a scrape's deadline (0.8 x interval) holds
# on a loaded 2-core machine: a report goes stale only after three intervals without a good one.
INTERVAL = "0.25"
SCRAPE = ("--scrape-interval", INTERVAL)
COMPLETIONS = "/v1/completions"


def metric(port, family, **labels):
    """The value of the sample of `family` whose labels include `labels`; None when absent."""
    status, _, body = get(port, "/metrics")
    if status != 200:
        raise AssertionError(f"/metrics answered {status}")
    for line in body.decode().splitlines():
        m = re.match(r"^" + re.escape(family) + r"(\{([^}]*)\})?\s+(\S+)$", line)
        if not m:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return None


def total(port, family, **labels):
    """The sum of every sample of `family` whose labels include `labels`."""
    status, _, body = get(port, "/metrics")
    out = 0.0
    for line in body.decode().splitlines():
        m = re.match(r"^" + re.escape(family) + r"(\{([^}]*)\})?\s+(\S+)$", line)
        if not m:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            out += float(m.group(3))
    return out


def load(port, **values):
    status, _, body = post_json(port, "/mock/load", values)
    if status != 200:
        raise AssertionError(f"/mock/load answered {status}: {body!r}")


def backend(mock):
    return f"127.0.0.1:{mock.port}"


def completion(port, i=0, stream_it=False, max_tokens=4):
    body = {"model": "m", "prompt": f"request {i}: " + "word " * 20, "max_tokens": max_tokens}
    if stream_it:
        body["stream"] = True
    return body


class EngineLoadCase(ClusterTestCase):
    proxy_args = SCRAPE

    def served(self, mocks, field):
        return [mock_stats(m.port)[field] for m in mocks]

    def send(self, n, stream_it=False):
        for i in range(n):
            status, _, body = post_json(self.port, COMPLETIONS, completion(self.port, i,
                                                                           stream_it))
            self.assertEqual(status, 200, body)

    def wait_reported(self, mock, role, signal, value):
        wait_until(lambda: metric(self.port, "glm_proxy_backend_reported", role=role,
                                  backend=backend(mock), signal=signal) == value,
                   message=f"the proxy did not read {signal}={value} from {backend(mock)}",
                   describe=lambda: healthcheck(self.port))


class QueueSteeringTest(EngineLoadCase):
    def test_a_prefiller_reporting_a_queue_is_avoided_then_shares_again(self):
        p0, p1 = self.cluster.prefillers
        load(p0.port, waiting=50)
        self.wait_reported(p0, "prefill", "waiting", 50)
        before = self.served([p0, p1], "prefill")
        self.send(20)
        after = self.served([p0, p1], "prefill")
        to_p0, to_p1 = after[0] - before[0], after[1] - before[1]
        self.assertEqual(to_p0 + to_p1, 20)
        self.assertGreaterEqual(to_p1, 18, f"p0 took {to_p0} of 20 while reporting 50 waiting")

        h = healthcheck(self.port)
        engine = [i["engine"] for i in h["instances"] if i["address"] == backend(p0)][0]
        self.assertEqual(engine["waiting"], 50)
        self.assertTrue(engine["up"])
        self.assertGreaterEqual(engine["age_seconds"], 0)

        load(p0.port, waiting=0)
        self.wait_reported(p0, "prefill", "waiting", 0)
        before = self.served([p0, p1], "prefill")
        self.send(20)
        after = self.served([p0, p1], "prefill")
        to_p0, to_p1 = after[0] - before[0], after[1] - before[1]
        # Even again: each takes a fair share (a scrape that catches one of our own requests
        # in flight can shift one or two).
        self.assertGreaterEqual(to_p0, 7, (to_p0, to_p1))
        self.assertGreaterEqual(to_p1, 7, (to_p0, to_p1))


class CacheCapacityTest(EngineLoadCase):
    """vllm:cache_config_info bounds cache_aware's index: an engine that holds 16 tokens cannot
    hold a 256-byte block of any prompt, so once read, the index keeps nothing."""
    prefillers = 1
    prefill_args = ("--num-gpu-blocks", "1", "--block-size", "16")
    proxy_args = SCRAPE + ("--prefill-policy", "cache_aware")

    def entries(self):
        return metric(self.port, "glm_proxy_prefix_index_entries",
                      backend=backend(self.cluster.prefillers[0]))

    def test_the_index_holds_no_more_than_the_engine(self):
        p0 = self.cluster.prefillers[0]
        # The first good read sets the bound; from then on every prefill is recorded within it.
        wait_until(lambda: metric(self.port, "glm_proxy_backend_metrics_up", role="prefill",
                                  backend=backend(p0)) == 1,
                   message="the prefiller's /metrics was not read")
        body = {"model": "m", "prompt": "word " * 400, "max_tokens": 2}
        for _ in range(3):
            status, _, raw = post_json(self.port, COMPLETIONS, body)
            self.assertEqual(status, 200, raw)
        self.assertEqual(self.entries(), 0, "the index kept blocks the engine cannot hold")


class UnboundedIndexTest(CacheCapacityTest):
    """The same without scraping: the index is bounded by --cache-max-entries only, and remembers
    the prompt (what makes the test above able to fail)."""
    proxy_args = ("--prefill-policy", "cache_aware")

    def test_the_index_holds_no_more_than_the_engine(self):
        body = {"model": "m", "prompt": "word " * 400, "max_tokens": 2}
        status, _, raw = post_json(self.port, COMPLETIONS, body)
        self.assertEqual(status, 200, raw)
        self.assertGreater(self.entries(), 0)


class SaturationTest(EngineLoadCase):
    prefillers = 1

    def test_a_decoder_at_097_kv_usage_gets_nothing_while_the_other_is_at_02(self):
        d0, d1 = self.cluster.decoders
        load(d0.port, kv_usage=0.97)
        load(d1.port, kv_usage=0.2)
        self.wait_reported(d0, "decode", "kv_usage", 0.97)
        self.wait_reported(d1, "decode", "kv_usage", 0.2)
        before = self.served([d0, d1], "decode")
        self.send(20, stream_it=True)
        after = self.served([d0, d1], "decode")
        self.assertEqual(after[0] - before[0], 0)
        self.assertEqual(after[1] - before[1], 20)
        h = healthcheck(self.port)
        sat = {i["address"]: i["engine"]["saturated"] for i in h["instances"]
               if i["role"] == "decode"}
        self.assertEqual(sat, {backend(d0): True, backend(d1): False})

    def test_all_saturated_fails_open(self):
        d0, d1 = self.cluster.decoders
        load(d0.port, kv_usage=0.99)
        load(d1.port, kv_usage=0.98)
        self.wait_reported(d0, "decode", "kv_usage", 0.99)
        self.wait_reported(d1, "decode", "kv_usage", 0.98)
        before = self.served([d0, d1], "decode")
        self.send(10)
        after = self.served([d0, d1], "decode")
        self.assertEqual(sum(after) - sum(before), 10)
        self.assertGreater(after[0] - before[0], 0)
        self.assertGreater(after[1] - before[1], 0)


class FaultTest(EngineLoadCase):
    def fault_case(self, fault, reason):
        p0, p1 = self.cluster.prefillers
        # The other one reports a queue first; its fault must not make it look idle.
        load(p0.port, metrics_fault=fault)
        wait_until(lambda: total(self.port, "glm_proxy_backend_scrape_errors_total",
                                 backend=backend(p0), reason=reason) >= 3,
                   message=f"no scrape errors ({reason}) counted for {backend(p0)}",
                   describe=lambda: healthcheck(self.port))
        self.assertEqual(metric(self.port, "glm_proxy_backend_metrics_up", role="prefill",
                                backend=backend(p0)), 0)
        wait_until(lambda: metric(self.port, "glm_proxy_backend_metrics_up", role="prefill",
                                  backend=backend(p1)) == 1,
                   message=f"{backend(p1)} does not read as up")
        before = self.served([p0, p1], "prefill")
        self.send(20)
        after = self.served([p0, p1], "prefill")
        # Every request served, shared as with scraping off.
        self.assertGreaterEqual(after[0] - before[0], 7)
        self.assertGreaterEqual(after[1] - before[1], 7)
        for i in healthcheck(self.port)["instances"]:
            self.assertEqual(i["state"], "active", i)
            self.assertEqual(i["ejections"], 0, i)
        log = self.cluster.proxy.read_log()
        warnings = [line for line in log.splitlines()
                    if backend(p0) in line and "/metrics not usable" in line]
        self.assertGreaterEqual(len(warnings), 1, log[-2000:])
        # Logged once at WARNING, then at DEBUG (not shown at the default INFO level).
        self.assertEqual(len(warnings), 1, warnings)

    def test_500_neither_ejects_nor_stops_service(self):
        self.fault_case("500", "status")

    def test_hang_times_out_without_ejection(self):
        self.fault_case("hang", "timeout")

    def test_bad_bodies_are_scrape_errors(self):
        p0, _ = self.cluster.prefillers
        for fault, reason in (("garbage", "not_prometheus_text"), ("nan", "bad_value"),
                              ("huge", "bad_value"), ("missing", "missing_running")):
            load(p0.port, metrics_fault=fault)
            wait_until(lambda: total(self.port, "glm_proxy_backend_scrape_errors_total",
                                     backend=backend(p0), reason=reason) >= 1,
                       message=f"{fault}: no scrape error {reason}",
                       describe=lambda: get(self.port, "/metrics")[2].decode()[-3000:])
        self.send(4)
        self.assertTrue(self.cluster.proxy.running())

    def test_a_stale_report_stops_counting(self):
        p0, p1 = self.cluster.prefillers
        load(p0.port, waiting=50)
        self.wait_reported(p0, "prefill", "waiting", 50)
        # The last good report stays visible, but past three intervals it no longer counts.
        load(p0.port, metrics_fault="500")
        wait_until(lambda: [i["engine"] for i in healthcheck(self.port)["instances"]
                            if i["address"] == backend(p0)][0]["fresh"] is False,
                   message="the report did not go stale")
        self.assertEqual(metric(self.port, "glm_proxy_backend_reported", role="prefill",
                                backend=backend(p0), signal="waiting"), 50)
        before = self.served([p0, p1], "prefill")
        self.send(10)
        after = self.served([p0, p1], "prefill")
        self.assertGreaterEqual(after[0] - before[0], 3)


class FallbackTest(ClusterTestCase):
    auto_cluster = False

    def start_without_prefillers(self, *extra):
        self.decoder = start_mock(name="decode-0", engine_id="decode-0")
        self.addCleanup(self.decoder.close_log)
        self.addCleanup(self.decoder.stop)
        self.proxy = start_proxy(closed_ports(2), [self.decoder.port], list(extra))
        self.addCleanup(self.proxy.close_log)
        self.addCleanup(self.proxy.stop)
        return self.proxy.port

    def test_every_prefiller_down_decodes_locally(self):
        port = self.start_without_prefillers("--prefill-fallback", "decode", "--retry-delay",
                                             "0")
        sent = []
        for i in range(20):
            body = completion(port, i, stream_it=True, max_tokens=6)
            sent.append(json.dumps(body).encode())
            status, _, events = stream(port, COMPLETIONS, body)
            self.assertEqual(status, 200, events)
            self.assertEqual(events[-1], "[DONE]", events)
            chunks = [json.loads(e) for e in events[:-1]]
            text = "".join(c["choices"][0].get("text", "") for c in chunks if c["choices"])
            self.assertTrue(text, events)
            self.assertEqual(chunks[-1]["choices"][0]["finish_reason"] or
                             chunks[-2]["choices"][0]["finish_reason"], "length", events)
        self.assertEqual(metric(port, "glm_proxy_prefill_fallbacks_total"), 20)
        got = [r for r in mock_requests(self.decoder.port) if r["method"] == "POST"]
        self.assertEqual(len(got), 20)
        # The client's bytes, unchanged: no kv_transfer_params was added.
        for r, body in zip(got, sent):
            self.assertEqual(r["body"].encode(), body)
        self.assertEqual(mock_stats(self.decoder.port)["plain"], 20)

    def test_without_fallback_a_clear_503(self):
        port = self.start_without_prefillers("--retry-delay", "0")
        codes = []
        for i in range(6):
            status, h, body = post_json(port, COMPLETIONS, completion(port, i))
            codes.append(status)
            self.assertIn(status, (502, 503), body)
            self.assertIn("error", json.loads(body))
        # Once the prefillers are ejected, the answer is the 503 saying so.
        self.assertEqual(codes[-1], 503)
        status, h, body = post_json(port, COMPLETIONS, completion(port, 99))
        self.assertEqual(status, 503)
        self.assertIn("no prefill instance is available", json.loads(body)["error"]["message"])
        self.assertEqual(metric(port, "glm_proxy_prefill_fallbacks_total"), 0)

    def test_a_prefillers_4xx_stays_the_clients_answer(self):
        prefiller = start_mock("--fail-status", "400", name="prefill-0", engine_id="prefill-0")
        self.addCleanup(prefiller.close_log)
        self.addCleanup(prefiller.stop)
        decoder = start_mock(name="decode-0", engine_id="decode-0")
        self.addCleanup(decoder.close_log)
        self.addCleanup(decoder.stop)
        proxy = start_proxy([prefiller.port], [decoder.port], ["--prefill-fallback", "decode"])
        self.addCleanup(proxy.close_log)
        self.addCleanup(proxy.stop)
        status, _, body = post_json(proxy.port, COMPLETIONS, completion(proxy.port))
        self.assertEqual(status, 400, body)
        self.assertEqual(mock_stats(decoder.port)["requests"], 0)
        self.assertEqual(metric(proxy.port, "glm_proxy_prefill_fallbacks_total"), 0)


if __name__ == "__main__":
    unittest.main()
