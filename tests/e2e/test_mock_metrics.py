"""mock-vllm's GET /metrics: vLLM's Prometheus text format (two engine label sets, the families a
scraper reads among others it must skip), its own running/waiting counts, load injected through
POST /mock/load, and the fault modes glm-proxy's scraper is tested against.

The format is checked by a strict parser here and, when installed, by `promtool check metrics`
(exit 3, lint only, is expected: like real vLLM the names contain ':'). No timing assertions.

Run by hand: cd tests/e2e && python3 -m unittest -v test_mock_metrics
"""

import http.client
import math
import re
import shutil
import socket
import subprocess
import threading
import unittest

from harness import (HTTP_TIMEOUT, PREFILL_KV, get, mock_requests, mock_reset, mock_stats,
                     open_raw, post_json, read_until, start_mock, wait_until)

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


class FormatError(AssertionError):
    pass


def parse(text):
    """Strict text format 0.0.4 -> (types {family: type}, samples [(name, labels, value)]).
    Every family has HELP and TYPE before its samples; labels are sorted by name (as
    prometheus_client writes them)."""
    types, helps, samples = {}, set(), []
    if not text.endswith("\n"):
        raise FormatError("body does not end with a newline")
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            helps.add(line.split(" ", 3)[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            if kind not in ("counter", "gauge", "histogram", "summary", "untyped"):
                raise FormatError(f"bad type in {line!r}")
            if name not in helps:
                raise FormatError(f"TYPE before HELP: {line!r}")
            types[name] = kind
            continue
        m = _NAME.match(line)
        if not m:
            raise FormatError(f"bad line {line!r}")
        name, rest = m.group(0), line[m.end():]
        labels = {}
        if rest.startswith("{"):
            end = rest.index("}")
            inner = rest[1:end]
            pairs = _LABEL.findall(inner)
            if ",".join(f'{k}="{v}"' for k, v in pairs) != inner:
                raise FormatError(f"bad labels in {line!r}")
            keys = [k for k, _ in pairs]
            if keys != sorted(keys):
                raise FormatError(f"labels not sorted in {line!r}")
            labels = dict(pairs)
            rest = rest[end + 1:]
        if not rest.startswith(" "):
            raise FormatError(f"no value in {line!r}")
        value = rest[1:]
        if value not in ("NaN", "+Inf", "-Inf") and not re.fullmatch(
                r"-?\d+(\.\d+)?(e[+-]?\d+)?", value):
            raise FormatError(f"bad value in {line!r}")
        family = name
        for suffix in ("_bucket", "_count", "_sum"):
            if name not in types and name.endswith(suffix) and name[:-len(suffix)] in types:
                family = name[:-len(suffix)]
        if family not in types:
            raise FormatError(f"sample before its TYPE: {line!r}")
        samples.append((name, labels, float(value.replace("+Inf", "inf"))))
    return types, samples


def series(samples, name):
    return {s[1].get("engine"): s[2] for s in samples if s[0] == name}


def total(samples, name):
    return sum(v for n, _, v in samples if n == name)


def scrape(port):
    status, h, body = get(port, "/metrics")
    if status != 200:
        raise AssertionError(f"/metrics answered {status}: {body[:200]!r}")
    if h.get("content-type") != TEXT_FORMAT:
        raise AssertionError(f"content-type {h.get('content-type')!r}")
    return parse(body.decode("utf-8"))


def load(port, **values):
    status, _, body = post_json(port, "/mock/load", values)
    if status != 200:
        raise AssertionError(f"/mock/load answered {status}: {body!r}")


class MockCase(unittest.TestCase):
    def mock(self, *args):
        p = start_mock(*args)
        self.addCleanup(p.close_log)
        self.addCleanup(p.stop)
        return p


class FormatTest(MockCase):
    def test_vllm_families_with_two_engines(self):
        m = self.mock("--prefix-cache-blocks", "500", "--model", "glm-5.2")
        types, samples = scrape(m.port)
        for name, kind in {"vllm:num_requests_running": "gauge",
                           "vllm:num_requests_waiting": "gauge",
                           "vllm:kv_cache_usage_perc": "gauge",
                           "vllm:cache_config_info": "gauge",
                           "vllm:prompt_tokens_total": "counter",
                           "vllm:prefix_cache_queries_total": "counter",
                           "vllm:prefix_cache_hits_total": "counter",
                           "vllm:time_to_first_token_seconds": "histogram",
                           "process_cpu_seconds_total": "counter"}.items():
            self.assertEqual(types.get(name), kind, name)
        for name in ("vllm:num_requests_running", "vllm:num_requests_waiting",
                     "vllm:kv_cache_usage_perc"):
            found = [(n, l) for n, l, _ in samples if n == name]
            self.assertEqual([l["engine"] for _, l in found], ["0", "1"], name)
            self.assertTrue(all(l["model_name"] == "glm-5.2" for _, l in found))
        info = [l for n, l, v in samples if n == "vllm:cache_config_info"]
        self.assertEqual(len(info), 2)
        self.assertEqual(info[0]["block_size"], "16")
        self.assertEqual(info[0]["num_gpu_blocks"], "500")
        self.assertEqual(info[0]["enable_prefix_caching"], "True")

    def test_histogram_is_cumulative_and_counts_prefills(self):
        m = self.mock("--prefix-cache-blocks", "500")
        for i in range(3):
            status, _, body = post_json(m.port, "/v1/completions", {
                "prompt": "x" * 640, "max_tokens": 1, "kv_transfer_params": PREFILL_KV})
            self.assertEqual(status, 200, body)
        _, samples = scrape(m.port)
        buckets = [(l["le"], v) for n, l, v in samples
                   if n == "vllm:time_to_first_token_seconds_bucket" and l["engine"] == "0"]
        counts = [v for _, v in buckets]
        self.assertEqual(counts, sorted(counts))
        self.assertEqual(buckets[-1][0], "+Inf")
        self.assertEqual(buckets[-1][1], 3)
        self.assertEqual(series(samples, "vllm:time_to_first_token_seconds_count")["0"], 3)
        self.assertEqual(series(samples, "vllm:prompt_tokens_total")["0"], 3 * 160)
        # The second and third prefill of the same prompt hit its first 9 blocks.
        self.assertEqual(series(samples, "vllm:prefix_cache_hits_total")["0"], 2 * 144)
        self.assertEqual(series(samples, "vllm:prefix_cache_queries_total")["0"], 3 * 160)

    def test_promtool_accepts_it(self):
        exe = shutil.which("promtool")
        if exe is None:
            self.skipTest("promtool not installed (Debian package prometheus)")
        m = self.mock()
        load(m.port, running=2, waiting=5, kv_usage=0.5)
        body = get(m.port, "/metrics")[2]
        r = subprocess.run([exe, "check", "metrics"], input=body, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        out = r.stdout.decode("utf-8", "replace")
        # 3: lint notes only (the ':' in vLLM's names); 1 would be a format error.
        self.assertIn(r.returncode, (0, 3), out)
        self.assertNotIn("error", out.lower().replace("should not contain", ""), out)

    def test_not_recorded_but_counted(self):
        m = self.mock()
        for _ in range(3):
            scrape(m.port)
        self.assertEqual(mock_requests(m.port), [])
        s = mock_stats(m.port)
        self.assertEqual((s["requests"], s["metrics_requests"]), (0, 3))
        self.assertEqual(post_json(m.port, "/metrics", b"")[0], 405)


class LoadTest(MockCase):
    def test_injected_load_is_split_over_the_engines(self):
        m = self.mock()
        load(m.port, running=3, waiting=51, kv_usage=0.97)
        _, samples = scrape(m.port)
        running = series(samples, "vllm:num_requests_running")
        waiting = series(samples, "vllm:num_requests_waiting")
        self.assertEqual(sum(running.values()), 3)
        self.assertEqual(sum(waiting.values()), 51)
        # Each engine has a share: reading one label set only gives too little.
        self.assertTrue(all(v > 0 for v in running.values()), running)
        self.assertTrue(all(v > 0 for v in waiting.values()), waiting)
        self.assertEqual(set(series(samples, "vllm:kv_cache_usage_perc").values()), {0.97})
        # A new POST replaces the whole injected load.
        load(m.port, waiting=4)
        _, samples = scrape(m.port)
        self.assertEqual(total(samples, "vllm:num_requests_running"), 0)
        self.assertEqual(total(samples, "vllm:num_requests_waiting"), 4)
        self.assertEqual(set(series(samples, "vllm:kv_cache_usage_perc").values()), {0.0})

    def test_bad_load_bodies_are_refused(self):
        m = self.mock()
        for body in (b"[]", b"{", b'{"running":"many"}', b'{"metrics_fault":"explode"}'):
            status, _, raw = post_json(m.port, "/mock/load", body)
            self.assertEqual(status, 400, (body, raw))

    def test_own_running_and_waiting(self):
        m = self.mock("--max-concurrent-prefills", "1", "--prefill-delay-ms", "60000",
                      "--token-interval-ms", "60000")
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        # A stream in progress is running; a prefill beyond the limit waits.
        socks.append(open_raw(m.port, "POST", "/v1/completions", {
            "prompt": "a", "max_tokens": 3, "stream": True,
            "kv_transfer_params": {"do_remote_prefill": True}}))
        socks.append(open_raw(m.port, "POST", "/v1/completions", {
            "prompt": "b", "max_tokens": 1, "kv_transfer_params": PREFILL_KV}))
        wait_until(lambda: mock_stats(m.port)["running"] == 2, message="two running")
        socks.append(open_raw(m.port, "POST", "/v1/completions", {
            "prompt": "c", "max_tokens": 1, "kv_transfer_params": PREFILL_KV}))
        wait_until(lambda: mock_stats(m.port)["waiting"] == 1, message="one waiting")
        load(m.port, running=10, waiting=10)
        _, samples = scrape(m.port)
        self.assertEqual(total(samples, "vllm:num_requests_running"), 12)
        self.assertEqual(total(samples, "vllm:num_requests_waiting"), 11)
        for s in socks:
            s.close()
        wait_until(lambda: total(scrape(m.port)[1], "vllm:num_requests_running") == 10,
                   message="running back to the injected load")
        self.assertEqual(total(scrape(m.port)[1], "vllm:num_requests_waiting"), 10)

    def test_mock_reset_drops_load_and_runtime_fault(self):
        m = self.mock()
        load(m.port, running=7, metrics_fault="500")
        self.assertEqual(get(m.port, "/metrics")[0], 500)
        mock_reset(m.port)
        _, samples = scrape(m.port)
        self.assertEqual(total(samples, "vllm:num_requests_running"), 0)


class FaultTest(MockCase):
    def test_status_500(self):
        m = self.mock("--metrics-fault", "500")
        status, _, body = get(m.port, "/metrics")
        self.assertEqual(status, 500, body)
        # Completions are unaffected.
        self.assertEqual(post_json(m.port, "/v1/completions", {"prompt": "a"})[0], 200)

    def test_hang_until_the_peer_leaves(self):
        m = self.mock("--metrics-fault", "hang")
        s = socket.create_connection(("127.0.0.1", m.port), timeout=HTTP_TIMEOUT)
        try:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(1.0)
            with self.assertRaises(socket.timeout):
                s.recv(1)
        finally:
            s.close()
        wait_until(lambda: mock_stats(m.port)["client_disconnects"] == 1,
                   message="the mock saw the scraper leave")
        load(m.port, metrics_fault="none")
        scrape(m.port)

    def test_garbage_is_not_prometheus_text(self):
        m = self.mock("--metrics-fault", "garbage")
        status, _, body = get(m.port, "/metrics")
        self.assertEqual(status, 200)
        with self.assertRaises((FormatError, UnicodeDecodeError, ValueError)):
            parse(body.decode("utf-8"))

    def test_nan_values(self):
        m = self.mock("--metrics-fault", "nan")
        _, samples = scrape(m.port)
        for name in ("vllm:num_requests_running", "vllm:num_requests_waiting",
                     "vllm:kv_cache_usage_perc"):
            values = series(samples, name).values()
            self.assertTrue(values and all(math.isnan(v) for v in values), name)

    def test_missing_families(self):
        m = self.mock()
        load(m.port, metrics_fault="missing")
        types, samples = scrape(m.port)
        for name in ("vllm:num_requests_running", "vllm:num_requests_waiting",
                     "vllm:kv_cache_usage_perc"):
            self.assertNotIn(name, types)
        self.assertIn("vllm:cache_config_info", types)

    def test_huge_body(self):
        m = self.mock()
        load(m.port, metrics_fault="huge")
        status, _, body = get(m.port, "/metrics")
        self.assertEqual(status, 200)
        self.assertGreater(len(body), 8 << 20)
        types, samples = parse(body.decode("utf-8"))
        self.assertIn("vllm:num_requests_running", types)

    def test_unknown_fault_flag_is_a_usage_error(self):
        from harness import MOCK_VLLM_BIN
        r = subprocess.run([MOCK_VLLM_BIN, "--metrics-fault", "explode"], timeout=10,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertNotEqual(r.returncode, 0, r.stdout)


if __name__ == "__main__":
    unittest.main()
