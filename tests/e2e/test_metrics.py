"""GET /metrics on glm-proxy's serving port: the Prometheus text format, and counters, histograms
and gauges that move with the traffic.

The exposition is checked twice: by a small parser here (every line, every family, histogram
invariants) and, when it is installed, by `promtool check metrics` (Debian package prometheus,
installed by .ci/install-deps.sh). No timing assertions: values are polled with wait_until, since
a request is counted just after its answer has been written.

Run by hand: cd tests/e2e && python3 -m unittest -v test_metrics
"""

import http.client
import math
import os
import re
import shutil
import subprocess
import sys
import unittest

import harness
from harness import (ClusterTestCase, closed_port, get, mock_stats, open_raw, post_json, read_until,
                     stream, wait_until)

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"

# --------------------------------------------------------------------------------------------
# The text exposition format (version 0.0.4), parsed strictly enough to catch a broken line.

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


class MetricsFormatError(AssertionError):
    pass


def _parse_value(text, line):
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise MetricsFormatError(f"bad sample value {text!r} in line {line!r}") from None


def _parse_labels(text, pos, line):
    """Parses `{name="value",...}` starting at text[pos] == "{" -> (labels dict, end position)."""
    labels = {}
    pos += 1
    while True:
        if pos < len(text) and text[pos] == "}":
            return labels, pos + 1
        m = _LABEL_NAME_RE.match(text, pos)
        if not m:
            raise MetricsFormatError(f"bad label name at column {pos} of {line!r}")
        name = m.group(0)
        pos = m.end()
        if text[pos:pos + 2] != '="':
            raise MetricsFormatError(f"expected =\" after label {name!r} in {line!r}")
        pos += 2
        value = []
        while True:
            if pos >= len(text):
                raise MetricsFormatError(f"unterminated label value in {line!r}")
            c = text[pos]
            if c == "\\":
                esc = text[pos + 1:pos + 2]
                if esc not in ("\\", '"', "n"):
                    raise MetricsFormatError(f"bad escape \\{esc} in {line!r}")
                value.append("\n" if esc == "n" else esc)
                pos += 2
            elif c == '"':
                pos += 1
                break
            else:
                value.append(c)
                pos += 1
        if name in labels:
            raise MetricsFormatError(f"label {name!r} repeated in {line!r}")
        labels[name] = "".join(value)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos < len(text) and text[pos] == "}":
            continue
        else:
            raise MetricsFormatError(f"expected , or }} after a label value in {line!r}")


class Metrics:
    """A parsed exposition: .samples is [(name, labels dict, value)], .types and .helps map a
    family name to its # TYPE / # HELP."""

    def __init__(self, text):
        self.text = text
        self.samples = []
        self.types = {}
        self.helps = {}
        for line in text.split("\n"):
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("TYPE", "HELP"):
                    if not _NAME_RE.fullmatch(parts[2]):
                        raise MetricsFormatError(f"bad metric name in {line!r}")
                    if parts[1] == "TYPE":
                        if len(parts) != 4 or parts[3] not in _TYPES:
                            raise MetricsFormatError(f"bad TYPE line {line!r}")
                        if parts[2] in self.types:
                            raise MetricsFormatError(f"second TYPE for {parts[2]}")
                        self.types[parts[2]] = parts[3]
                    else:
                        self.helps[parts[2]] = parts[3] if len(parts) == 4 else ""
                continue
            m = _NAME_RE.match(line)
            if not m:
                raise MetricsFormatError(f"bad metric name in line {line!r}")
            name = m.group(0)
            pos = m.end()
            labels = {}
            if line[pos:pos + 1] == "{":
                labels, pos = _parse_labels(line, pos, line)
            rest = line[pos:].split()
            if line[pos:pos + 1] != " " or not 1 <= len(rest) <= 2:
                raise MetricsFormatError(f"expected ' value [timestamp]' in line {line!r}")
            value = _parse_value(rest[0], line)
            if len(rest) == 2 and not re.fullmatch(r"-?\d+", rest[1]):
                raise MetricsFormatError(f"bad timestamp in line {line!r}")
            self.samples.append((name, labels, value))

    def family_of(self, sample_name):
        if sample_name in self.types:
            return sample_name
        for family, kind in self.types.items():
            for suffix in _SUFFIXES.get(kind, ()):
                if sample_name == family + suffix:
                    return family
        return None

    def find(self, name, **labels):
        """[(labels, value)] of the samples called `name` whose labels include `labels`."""
        return [(l, v) for n, l, v in self.samples
                if n == name and all(l.get(k) == str(x) for k, x in labels.items())]

    def value(self, name, **labels):
        """The value of the one sample matching; 0 when there is none (a labelled counter appears
        only once incremented). More than one match is an error: give more labels."""
        found = self.find(name, **labels)
        if len(found) > 1:
            raise AssertionError(f"{name} {labels}: {len(found)} samples match: {found!r}")
        return found[0][1] if found else 0.0

    def total(self, name, **labels):
        return sum(v for _, v in self.find(name, **labels))

    def label_values(self, name, label):
        return sorted({l[label] for l, _ in self.find(name) if label in l})


def check_consistency(testcase, m):
    """Format rules beyond the line syntax: every sample belongs to a declared family, counters are
    never negative, histogram buckets are cumulative and end at +Inf == _count."""
    for name, labels, value in m.samples:
        family = m.family_of(name)
        testcase.assertIsNotNone(family, f"sample {name} has no # TYPE")
        testcase.assertIn(family, m.helps, f"{family} has no # HELP")
        testcase.assertTrue(family.startswith("glm_proxy_"), f"{family}: not glm_proxy_ prefixed")
        if m.types[family] == "counter":
            testcase.assertGreaterEqual(value, 0, f"{name}{labels}")
    for family, kind in m.types.items():
        if kind != "histogram":
            continue
        series = {}
        for labels, value in m.find(family + "_bucket"):
            testcase.assertIn("le", labels, f"{family}_bucket without le")
            key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            series.setdefault(key, []).append((_parse_value(labels["le"], labels["le"]), value))
        for key, buckets in series.items():
            bounds = [b for b, _ in buckets]
            testcase.assertEqual(bounds, sorted(bounds), f"{family}{key}: buckets out of order")
            testcase.assertEqual(bounds[-1], math.inf, f"{family}{key}: no +Inf bucket")
            counts = [c for _, c in buckets]
            testcase.assertEqual(counts, sorted(counts), f"{family}{key}: not cumulative")
            count = m.value(family + "_count", **dict(key))
            testcase.assertEqual(counts[-1], count, f"{family}{key}: +Inf bucket != _count")
            sum_found = m.find(family + "_sum", **dict(key))
            testcase.assertEqual(len(sum_found), 1, f"{family}{key}: no single _sum")


def scrape(port):
    status, h, body = get(port, "/metrics")
    if status != 200:
        raise AssertionError(f"/metrics answered {status}: {body!r}")
    return Metrics(body.decode("utf-8"))


def scrape_after(port, answered, timeout=10.0):
    """A scrape once `answered` non-/metrics requests have been counted. A request is counted
    after its answer is written, so a client can read its answer before the counters move; with
    --workers 2 (the TSan stage) the scrape may even be served first by the other worker."""
    last = {}

    def counted():
        last["m"] = scrape(port)
        m = last["m"]
        return (m.total("glm_proxy_requests_total")
                - m.total("glm_proxy_requests_total", endpoint="/metrics")) >= answered

    wait_until(counted, timeout, message=f"{answered} answers were not counted",
               describe=lambda: last["m"].text if "m" in last else None)
    return last["m"]


# --------------------------------------------------------------------------------------------
# promtool


def promtool_command():
    """argv for `promtool check metrics`, with --lint=none when this version has it (2.42, the
    Debian 12 one, has not: there lint problems exit 3 and format errors exit 1)."""
    exe = shutil.which("promtool")
    if exe is None:
        return None
    r = subprocess.run([exe, "check", "metrics", "--help"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    argv = [exe, "check", "metrics"]
    if "--lint" in r.stdout.decode("utf-8", "replace"):
        argv.append("--lint=none")
    return argv


def run_promtool(argv, text):
    r = subprocess.run(argv, input=text.encode("utf-8"), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    return r.returncode, r.stdout.decode("utf-8", "replace")


# --------------------------------------------------------------------------------------------


def addr(port):
    return f"127.0.0.1:{port}"


class MetricsCase(ClusterTestCase):
    def scrape(self, port=None):
        return scrape(self.port if port is None else port)

    def wait_metric(self, predicate, message, port=None, timeout=10.0):
        """Polls /metrics until predicate(Metrics) holds; returns that scrape."""
        last = {}

        def check():
            last["m"] = self.scrape(port)
            return predicate(last["m"])

        wait_until(check, timeout, message=message,
                   describe=lambda: last["m"].text if "m" in last else None)
        return last["m"]

    def assert_stream_ok(self, status, events, n):
        self.assertEqual(status, 200, events)
        self.assertEqual(events[-1], "[DONE]", events)
        self.assertEqual(len(events), n + 1, events)


class FormatTests(MetricsCase):
    def make_traffic(self):
        status, _, events = stream(self.port, COMPLETIONS,
                                   {"prompt": "a b", "max_tokens": 3, "stream": True})
        self.assert_stream_ok(status, events, 3)
        status, _, body = post_json(self.port, CHAT, {
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        self.assertEqual(status, 200, body)
        status, _, _ = post_json(self.port, COMPLETIONS, b"not json")
        self.assertEqual(status, 400)
        status, _, _ = get(self.port, "/no/such/path")
        self.assertEqual(status, 404)
        status, _, events = stream(self.port, COMPLETIONS, {
            "prompt": "x", "max_tokens": 4, "stream": True, "mock_fault": "recompute"})
        self.assertEqual(status, 200, events)
        # Every prefill attempt answers 500: upstream errors and retries, then a 500.
        status, _, body = post_json(self.port, COMPLETIONS, {
            "prompt": "x", "max_tokens": 2, "mock_fault": "prefill_error"})
        self.assertEqual(status, 500, body)
        self.cluster.wait_idle()

    def test_content_type_and_method(self):
        status, h, body = get(self.port, "/metrics")
        self.assertEqual(status, 200, body)
        self.assertEqual(h.get("content-type"), "text/plain; version=0.0.4; charset=utf-8")
        status, h, body = post_json(self.port, "/metrics", b"")
        self.assertEqual(status, 405, body)
        self.assertEqual(h.get("allow"), "GET, HEAD")

    def test_parses_and_is_consistent(self):
        self.make_traffic()
        m = self.scrape()
        check_consistency(self, m)
        expected = {
            "glm_proxy_requests_total": "counter",
            "glm_proxy_request_duration_seconds": "histogram",
            "glm_proxy_time_to_first_token_seconds": "histogram",
            "glm_proxy_inter_token_seconds": "histogram",
            "glm_proxy_prefill_duration_seconds": "histogram",
            "glm_proxy_upstream_errors_total": "counter",
            "glm_proxy_retries_total": "counter",
            "glm_proxy_recomputes_total": "counter",
            "glm_proxy_client_disconnects_total": "counter",
            "glm_proxy_stream_events_total": "counter",
            "glm_proxy_connections_active": "gauge",
            "glm_proxy_build_info": "gauge",
            "glm_proxy_backend_inflight": "gauge",
            "glm_proxy_backend_load": "gauge",
            "glm_proxy_backend_healthy": "gauge",
        }
        for family, kind in expected.items():
            with self.subTest(family=family):
                self.assertEqual(m.types.get(family), kind, m.text)

    def test_promtool_check_metrics(self):
        argv = promtool_command()
        if argv is None:
            self.skipTest("promtool not installed (Debian package prometheus)")
        # Its error detection itself: a broken exposition must fail, a clean one must pass.
        code, out = run_promtool(argv, 'glm_proxy_x{a="1"} 1 not_a_timestamp\n')
        self.assertNotIn(code, (0, 3), f"promtool accepted a broken line: {out}")
        self.make_traffic()
        text = self.scrape().text
        code, out = run_promtool(argv, text)
        # 0: clean; 3: lint problems only (promtool without --lint=none); anything else is a
        # format error.
        self.assertIn(code, (0, 3),
                      f"promtool check metrics exit {code}:\n{out}\n--- input:\n{text}")
        self.assertNotIn("error while linting", out, out)
        if code == 3:
            # Printed for the record, not failed on: promlint's naming advice.
            sys.stderr.write(f"\npromtool lint notes on /metrics:\n{out}")

    def test_build_info(self):
        with open(os.path.join(harness._REPO, "CMakeLists.txt"), encoding="utf-8") as f:
            version = re.search(r"project\(glm-proxy\s+VERSION\s+(\S+)", f.read()).group(1)
        m = self.scrape()
        self.assertEqual(m.find("glm_proxy_build_info"), [({"version": version}, 1.0)], m.text)


def readme_families():
    """Every glm_proxy_* family the README's metrics table lists."""
    with open(os.path.join(harness._REPO, "README.md"), encoding="utf-8") as f:
        return sorted(set(re.findall(r"^\| `(glm_proxy_\w+)` \|", f.read(), re.M)))


class FirstScrapeTests(MetricsCase):
    def test_every_readme_family_has_series_at_the_first_scrape(self):
        families = readme_families()
        self.assertGreaterEqual(len(families), 19, families)
        m = self.scrape()
        for family in families:
            with self.subTest(family=family):
                self.assertIn(family, m.types, m.text)
                samples = [s for s in m.samples if m.family_of(s[0]) == family]
                self.assertTrue(samples, f"{family} has no series yet: a dashboard sees no data")

    def test_known_labels_start_at_zero(self):
        m = self.scrape()
        backend = f"127.0.0.1:{self.cluster.prefill_ports[0]}"
        for reason in ("malformed", "not_implemented", "invalid_body", "max_inflight",
                       "queue_timeout", "unauthorized", "no_instance"):
            self.assertEqual(m.find("glm_proxy_refusals_total", reason=reason),
                             [({"reason": reason}, 0.0)], m.text)
        self.assertEqual(m.find("glm_proxy_upstream_errors_total", role="prefill",
                                backend=backend, kind="timeout"),
                         [({"role": "prefill", "backend": backend, "kind": "timeout"}, 0.0)],
                         m.text)
        self.assertIn(({"backend": backend}, 0.0),
                      m.find("glm_proxy_prefill_duration_seconds_count", backend=backend))
        self.assertEqual(m.find("glm_proxy_request_duration_seconds_count",
                                endpoint="/v1/completions"),
                         [({"endpoint": "/v1/completions"}, 0.0)], m.text)


class TrafficTests(MetricsCase):
    # Separate decoder writes, so that a stream has token gaps to observe.
    decode_args = ("--token-interval-ms", "5")

    def test_completions_move_counters_and_histograms(self):
        n_stream, n_plain, tokens = 3, 2, 5
        before = self.scrape()
        for i in range(n_stream):
            status, _, events = stream(self.port, COMPLETIONS, {
                "prompt": f"stream {i}", "max_tokens": tokens, "stream": True})
            self.assert_stream_ok(status, events, tokens)
        for i in range(n_plain):
            status, _, body = post_json(self.port, COMPLETIONS, {
                "prompt": f"plain {i}", "max_tokens": tokens})
            self.assertEqual(status, 200, body)
        total = n_stream + n_plain
        ok = {"endpoint": COMPLETIONS, "code": "200"}

        def delta(m, name, **labels):
            return m.total(name, **labels) - before.total(name, **labels)

        m = self.wait_metric(lambda m: delta(m, "glm_proxy_requests_total", **ok) >= total,
                             "requests_total did not reach the requests sent")
        # Exactly: nothing else went to /v1/completions.
        self.assertEqual(delta(m, "glm_proxy_requests_total", **ok), total, m.text)
        self.assertEqual(delta(m, "glm_proxy_request_duration_seconds_count",
                               endpoint=COMPLETIONS), total, m.text)
        # Time to first token is a streaming figure: a non-stream answer has no first token.
        self.assertEqual(delta(m, "glm_proxy_time_to_first_token_seconds_count"), n_stream, m.text)
        self.assertGreaterEqual(delta(m, "glm_proxy_stream_events_total"),
                                n_stream * (tokens + 1), m.text)
        self.assertGreater(delta(m, "glm_proxy_inter_token_seconds_count"), 0, m.text)

        backends = m.label_values("glm_proxy_prefill_duration_seconds_count", "backend")
        self.assertTrue(backends, m.text)
        self.assertLessEqual(set(backends), {addr(p) for p in self.cluster.prefill_ports}, m.text)
        self.assertEqual(delta(m, "glm_proxy_prefill_duration_seconds_count"), total, m.text)
        for b in backends:
            self.assertEqual(len(m.find("glm_proxy_prefill_duration_seconds_count", backend=b)), 1)
        # Every prefill reached a prefiller: the per-backend counts agree with the mocks.
        for p in self.cluster.prefillers:
            self.assertEqual(m.value("glm_proxy_prefill_duration_seconds_count",
                                     backend=addr(p.port)),
                             mock_stats(p.port)["prefill"], m.text)

        # Nothing failed.
        self.assertEqual(m.total("glm_proxy_upstream_errors_total"), 0, m.text)
        self.assertEqual(m.total("glm_proxy_retries_total"), 0, m.text)
        self.assertEqual(m.value("glm_proxy_recomputes_total"), 0, m.text)
        self.assertEqual(m.value("glm_proxy_client_disconnects_total"), 0, m.text)
        check_consistency(self, m)

    def test_chat_endpoint_label(self):
        status, _, events = stream(self.port, CHAT, {
            "messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "stream": True})
        self.assert_stream_ok(status, events, 2)
        self.wait_metric(
            lambda m: m.value("glm_proxy_requests_total", endpoint=CHAT, code="200") == 1,
            "chat request not counted under its own endpoint")

    def test_bad_request_and_unknown_path(self):
        status, _, body = post_json(self.port, COMPLETIONS, b"{not json")
        self.assertEqual(status, 400, body)
        status, _, body = get(self.port, "/no/such/endpoint?x=1")
        self.assertEqual(status, 404, body)
        status, _, body = post_json(self.port, "/v2/anything", {"prompt": "x"})
        self.assertEqual(status, 404, body)
        m = self.wait_metric(
            lambda m: m.value("glm_proxy_requests_total", endpoint="other", code="404") == 2,
            "unknown paths not counted as endpoint=\"other\", code 404")
        self.assertEqual(m.value("glm_proxy_requests_total", endpoint=COMPLETIONS, code="400"), 1,
                         m.text)
        self.assertEqual(m.value("glm_proxy_requests_total", endpoint=COMPLETIONS, code="200"), 0,
                         m.text)
        # The path itself never becomes a label value.
        self.assertNotIn("/no/such/endpoint", m.text)
        self.assertNotIn("/v2/anything", m.text)
        # The bad request never reached a backend.
        self.assertEqual(m.total("glm_proxy_prefill_duration_seconds_count"), 0, m.text)

    def test_recompute(self):
        status, _, events = stream(self.port, COMPLETIONS, {
            "prompt": "x", "max_tokens": 6, "stream": True, "mock_fault": "recompute"})
        self.assert_stream_ok(status, events, 6)
        # The request is counted after its last byte left, so possibly after the client has
        # read it and the scrape (on another worker with --workers 2) has been answered: wait.
        m = self.wait_metric(
            lambda m: m.value("glm_proxy_recomputes_total") == 1 and m.value(
                "glm_proxy_requests_total", endpoint=COMPLETIONS, code="200") == 1,
            "recomputes_total / requests_total did not count the preempted request")
        # Two prefills (the first and the re-prefill), one client request, one first token.
        self.assertEqual(m.total("glm_proxy_prefill_duration_seconds_count"), 2, m.text)
        self.assertEqual(m.value("glm_proxy_time_to_first_token_seconds_count"), 1, m.text)


class BackendGaugeTests(MetricsCase):
    def backends(self):
        return ([("prefill", addr(p)) for p in self.cluster.prefill_ports]
                + [("decode", addr(p)) for p in self.cluster.decode_ports])

    def test_gauges_per_backend_when_idle(self):
        m = self.scrape()
        for family in ("glm_proxy_backend_inflight", "glm_proxy_backend_load",
                       "glm_proxy_backend_healthy"):
            got = sorted((l["role"], l["backend"]) for l, _ in m.find(family))
            self.assertEqual(got, sorted(self.backends()), f"{family}:\n{m.text}")
            for l, _ in m.find(family):
                self.assertEqual(set(l), {"role", "backend"}, f"{family} labels {l}")
        for role, backend in self.backends():
            labels = {"role": role, "backend": backend}
            self.assertEqual(m.value("glm_proxy_backend_inflight", **labels), 0, m.text)
            self.assertEqual(m.value("glm_proxy_backend_load", **labels), 0, m.text)
            self.assertEqual(m.value("glm_proxy_backend_healthy", **labels), 1, m.text)

    def test_hanging_stream_holds_its_decoder_then_client_disconnect(self):
        before = self.scrape()
        self.assertEqual(before.value("glm_proxy_client_disconnects_total"), 0, before.text)
        # The decoder sends one token, then nothing until the client leaves.
        sock = open_raw(self.port, "POST", COMPLETIONS, {
            "prompt": "x", "max_tokens": 4, "stream": True, "mock_fault": "decode_hang"})
        try:
            read_until(sock, lambda b: b"tok0" in b)

            def one_decoder_held(m):
                held = [l["backend"] for l, v in m.find("glm_proxy_backend_inflight",
                                                        role="decode") if v == 1]
                rest = [v for l, v in m.find("glm_proxy_backend_inflight", role="decode")
                        if l["backend"] not in held]
                # This connection and the scrape's own.
                return (len(held) == 1 and rest == [0.0] * len(rest)
                        and m.value("glm_proxy_connections_active") == 2)

            m = self.wait_metric(one_decoder_held, "no decoder shows the hanging stream")
            held = [l["backend"] for l, v in m.find("glm_proxy_backend_inflight", role="decode")
                    if v == 1][0]
            self.assertIn(held, [addr(p) for p in self.cluster.decode_ports])
            self.assertGreater(m.value("glm_proxy_backend_load", role="decode", backend=held), 0,
                               m.text)
            # The prefill share was released on the first decode byte.
            self.assertEqual(m.total("glm_proxy_backend_inflight", role="prefill"), 0, m.text)
            self.assertEqual(m.value("glm_proxy_client_disconnects_total"), 0, m.text)
        finally:
            sock.close()
        m = self.wait_metric(
            lambda m: m.value("glm_proxy_client_disconnects_total") == 1
            and m.total("glm_proxy_backend_inflight") == 0,
            "the client's departure was not counted, or the decoder stayed held")
        for role, backend in self.backends():
            self.assertEqual(m.value("glm_proxy_backend_load", role=role, backend=backend), 0,
                             m.text)
        self.cluster.wait_idle()

    def test_isolated_backend_reads_unhealthy_then_disappears(self):
        sock = open_raw(self.port, "POST", COMPLETIONS, {
            "prompt": "x", "max_tokens": 4, "stream": True, "mock_fault": "decode_hang"})
        try:
            read_until(sock, lambda b: b"tok0" in b)
            m = self.wait_metric(
                lambda m: m.total("glm_proxy_backend_inflight", role="decode") == 1,
                "no decoder shows the hanging stream")
            held = next(l["backend"] for l, v in m.find("glm_proxy_backend_inflight",
                                                         role="decode") if v == 1)
            status, _, body = post_json(self.port, "/instances/remove",
                                        {"type": "decode", "instances": [held]})
            self.assertEqual(status, 200, body)
            self.assertIn(b"isolated", body)
            m = self.scrape()
            self.assertEqual(m.value("glm_proxy_backend_healthy", role="decode", backend=held), 0,
                             m.text)
            self.assertEqual(m.value("glm_proxy_backend_inflight", role="decode", backend=held),
                             1, m.text)
            for role, backend in self.backends():
                if backend != held:
                    self.assertEqual(m.value("glm_proxy_backend_healthy", role=role,
                                             backend=backend), 1, m.text)
        finally:
            sock.close()
        # Removed once the last request drains: its label sets go with it.
        m = self.wait_metric(
            lambda m: not m.find("glm_proxy_backend_healthy", backend=held),
            "the removed decoder's gauges stayed after the drain")
        for family in ("glm_proxy_backend_inflight", "glm_proxy_backend_load"):
            self.assertEqual(m.find(family, backend=held), [], m.text)
        self.assertEqual(len(m.find("glm_proxy_backend_healthy")), len(self.backends()) - 1)

    def test_keep_alive_connection_is_active(self):
        # Only the scrape's own connection once earlier ones are gone.
        self.wait_metric(lambda m: m.value("glm_proxy_connections_active") == 1,
                         "connections_active did not settle at 1 (the scrape itself)")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", "/healthcheck")
            resp = conn.getresponse()
            resp.read()
            self.assertEqual(resp.status, 200)
            self.assertIsNotNone(conn.sock, "server closed the keep-alive connection")
            self.wait_metric(lambda m: m.value("glm_proxy_connections_active") == 2,
                             "the idle keep-alive connection is not counted")

            # Scraped over the keep-alive connection itself: it is the only one left.
            def scrape_on_conn():
                conn.request("GET", "/metrics")
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                self.assertIsNotNone(conn.sock, "server closed the keep-alive connection")
                return Metrics(resp.read().decode("utf-8"))

            wait_until(lambda: scrape_on_conn().value("glm_proxy_connections_active") == 1,
                       message="a scrape on the keep-alive connection does not count just it")
        finally:
            conn.close()
        self.wait_metric(lambda m: m.value("glm_proxy_connections_active") == 1,
                         "connections_active did not go back down after the close")


class DisconnectCountTests(MetricsCase):
    prefillers = 1
    decoders = 1

    def test_leaving_a_flowing_stream_counts_once(self):
        # Reproduces about every other trial with mock-vllm's token interval 0.
        for trial in range(10):
            with self.subTest(trial=trial):
                before = self.scrape().value("glm_proxy_client_disconnects_total")
                sock = open_raw(self.port, "POST", COMPLETIONS, {
                    "prompt": "x", "max_tokens": 100000, "stream": True})
                try:
                    read_until(sock, lambda b: b.count(b"tok") > 20)
                finally:
                    sock.close()  # while the proxy is still relaying
                self.cluster.wait_idle()
                m = self.wait_metric(
                    lambda m: m.value("glm_proxy_client_disconnects_total") > before,
                    "the disconnect was not counted")
                self.assertEqual(m.value("glm_proxy_client_disconnects_total") - before, 1,
                                 m.text)


class UpstreamErrorTests(MetricsCase):
    """A dead prefiller listed first (ties go to it) beside a live one."""

    auto_cluster = False

    def setUp(self):
        super().setUp()
        self.procs = []
        self.addCleanup(self.stop_procs)
        self.live = self.spawn(harness.start_mock, name="prefill-live", engine_id="prefill-live")
        self.decoder = self.spawn(harness.start_mock, name="decode-0", engine_id="decode-0")
        self.dead = closed_port()
        self.proxy = self.spawn(harness.start_proxy, [self.dead, self.live.port],
                                [self.decoder.port],
                                ["--max-retries", "3", "--retry-delay", "0.001"])

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

    def test_refused_prefiller_counts_error_and_retry(self):
        port = self.proxy.port
        status, _, body = post_json(port, COMPLETIONS, {"prompt": "x", "max_tokens": 2})
        self.assertEqual(status, 200, body)
        m = self.wait_metric(
            lambda m: m.value("glm_proxy_requests_total", endpoint=COMPLETIONS, code="200") == 1,
            "request not counted", port=port)
        self.assertEqual(m.value("glm_proxy_upstream_errors_total", role="prefill",
                                 backend=addr(self.dead), kind="refused"), 1, m.text)
        self.assertEqual(m.total("glm_proxy_upstream_errors_total"), 1, m.text)
        self.assertEqual(m.value("glm_proxy_retries_total", role="prefill"), 1, m.text)
        self.assertEqual(m.value("glm_proxy_retries_total", role="decode"), 0, m.text)
        # The retry went to the live prefiller, and only the successful prefill has a duration
        # (the dead one's series exists from the start, at 0).
        self.assertEqual(mock_stats(self.live.port)["prefill"], 1)
        self.assertEqual(sorted(m.find("glm_proxy_prefill_duration_seconds_count"),
                                key=lambda s: s[1]),
                         [({"backend": addr(self.dead)}, 0.0),
                          ({"backend": addr(self.live.port)}, 1.0)], m.text)
        # The dead prefiller is still a chooseable backend (it was not removed).
        self.assertEqual(m.value("glm_proxy_backend_healthy", role="prefill",
                                 backend=addr(self.dead)), 1, m.text)

        # A second request fails over the same way: the counters keep adding up.
        status, _, events = stream(port, COMPLETIONS,
                                   {"prompt": "y", "max_tokens": 2, "stream": True})
        self.assertEqual(status, 200, events)
        m = self.wait_metric(
            lambda m: m.value("glm_proxy_requests_total", endpoint=COMPLETIONS, code="200") == 2,
            "second request not counted", port=port)
        self.assertEqual(m.value("glm_proxy_upstream_errors_total", role="prefill",
                                 backend=addr(self.dead), kind="refused"), 2, m.text)
        self.assertEqual(m.value("glm_proxy_retries_total", role="prefill"), 2, m.text)
        self.assertEqual(mock_stats(self.live.port)["prefill"], 2)
        check_consistency(self, m)


if __name__ == "__main__":
    unittest.main()
