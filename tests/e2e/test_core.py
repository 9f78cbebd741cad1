"""Core end-to-end behaviour of glm-proxy against mock-vllm prefillers and decoders.

Behaviour under test: /work/shared/reference/pd-proxy-behaviour.md (the two-step request, the
prefill and decode bodies, headers, errors, client disconnects, the command line).

Run by hand: cd tests/e2e && python3 -m unittest -v test_core
"""

import concurrent.futures
import http.client
import json
import re
import time
import unittest

import harness
from harness import (PREFILL_KV, ClusterTestCase, body_bytes, get, healthcheck, mock_requests,
                     mock_stats, open_raw, post_json, read_until, request, run_proxy, stream,
                     wait_until)

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def tokens_text(n):
    return "".join(f" tok{i}" for i in range(n))


def strict_loads(data):
    """json.loads that rejects duplicate keys (a spliced body must not repeat a member)."""

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


def dumps_raw(obj):
    """UTF-8 JSON as a client would send it (non-ASCII not escaped)."""
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def mock_kv_bytes(engine_id, request_id, port):
    """The exact kv_transfer_params bytes a mock-vllm prefiller answers with."""
    return ('{"do_remote_prefill":true,"do_remote_decode":false,"remote_block_ids":[[1,2,3]],'
            f'"remote_engine_id":"{engine_id}","remote_request_id":"{request_id}",'
            f'"remote_host":"127.0.0.1","remote_port":{port},"tp_size":1}}').encode()


class BaseCase(ClusterTestCase):
    """Assertion helpers shared by the test classes."""

    def assert_vllm_error(self, status, headers, body, expected_status):
        self.assertEqual(status, expected_status, f"status; body {body!r}")
        self.assertTrue(headers.get("content-type", "").startswith("application/json"),
                        f"content-type {headers.get('content-type')!r}; body {body!r}")
        doc = strict_loads(body)
        self.assertEqual(set(doc), {"error"}, f"body {body!r}")
        err = doc["error"]
        self.assertIsInstance(err, dict, f"body {body!r}")
        self.assertIsInstance(err.get("message"), str, f"body {body!r}")
        self.assertTrue(err["message"], f"empty message in {body!r}")
        self.assertIsInstance(err.get("type"), str, f"body {body!r}")
        self.assertIn("param", err, f"body {body!r}")
        self.assertIsNone(err["param"], f"body {body!r}")
        self.assertIs(type(err.get("code")), int, f"body {body!r}")
        self.assertEqual(err["code"], expected_status, f"body {body!r}")
        return err

    def assert_token_stream(self, status, headers, events, n, chat):
        self.assertEqual(status, 200, f"events {events!r}")
        self.assertEqual(headers.get("content-type"), "text/event-stream; charset=utf-8")
        self.assertGreaterEqual(len(events), 1, "no SSE event at all")
        self.assertEqual(events[-1], "[DONE]", f"last event; all: {events!r}")
        self.assertEqual(events.count("[DONE]"), 1, f"events {events!r}")
        chunks = [strict_loads(e) for e in events[:-1]]
        self.assertEqual(len(chunks), n, f"token events {events!r}")
        for i, chunk in enumerate(chunks):
            self.assertNotIn("error", chunk, f"event {i}: {chunk!r}")
            choice = chunk["choices"][0]
            text = choice["delta"]["content"] if chat else choice["text"]
            self.assertEqual(text, f" tok{i}", f"event {i}: {chunk!r}")
        return chunks

    def assert_completion(self, status, headers, body, n, chat):
        self.assertEqual(status, 200, f"body {body!r}")
        self.assertEqual(headers.get("content-type"), "application/json")
        doc = strict_loads(body)
        choice = doc["choices"][0]
        text = choice["message"]["content"] if chat else choice["text"]
        self.assertEqual(text, tokens_text(n), f"body {body!r}")
        return doc

    def records(self, mocks):
        """[(mock Process, record)] of every completion request the given mocks received."""
        out = []
        for m in mocks:
            for r in mock_requests(m.port):
                out.append((m, r))
        return out

    def one_record(self, mocks, what):
        got = self.records(mocks)
        self.assertEqual(len(got), 1, f"{what}: expected exactly one request, got {got!r}")
        return got[0]

    def assert_no_backend_request(self):
        got = self.cluster.all_mock_requests()
        self.assertEqual(got, {name: [] for name in got}, "a backend was reached")

    def total_stats(self, mocks, key):
        return sum(mock_stats(m.port)[key] for m in mocks)


# ----------------------------------------------------------------------------------------------
# Answers


class AnswerTests(BaseCase):
    def test_completions_non_stream(self):
        status, h, body = post_json(self.port, COMPLETIONS,
                                    {"model": "m", "prompt": "hello world", "max_tokens": 5})
        doc = self.assert_completion(status, h, body, 5, chat=False)
        self.assertEqual(doc["object"], "text_completion")
        self.cluster.wait_idle()

    def test_completions_stream(self):
        status, h, events = stream(self.port, COMPLETIONS,
                                   {"model": "m", "prompt": "hello world", "max_tokens": 7,
                                    "stream": True})
        self.assert_token_stream(status, h, events, 7, chat=False)
        self.cluster.wait_idle()

    def test_chat_non_stream(self):
        status, h, body = post_json(self.port, CHAT, {
            "model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4})
        doc = self.assert_completion(status, h, body, 4, chat=True)
        self.assertEqual(doc["object"], "chat.completion")
        self.cluster.wait_idle()

    def test_chat_stream(self):
        status, h, events = stream(self.port, CHAT, {
            "model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 6,
            "stream": True})
        self.assert_token_stream(status, h, events, 6, chat=True)
        self.cluster.wait_idle()

    def test_stream_with_usage_passes_usage_chunk(self):
        status, h, events = stream(self.port, COMPLETIONS, {
            "prompt": "a b c", "max_tokens": 3, "stream": True,
            "stream_options": {"include_usage": True}})
        self.assertEqual(status, 200)
        self.assertEqual(events[-1], "[DONE]", events)
        usage = strict_loads(events[-2])
        self.assertEqual(usage["choices"], [], events)
        self.assertEqual(usage["usage"]["completion_tokens"], 3, events)
        tokens = [strict_loads(e)["choices"][0]["text"] for e in events[:-2]]
        self.assertEqual(tokens, [f" tok{i}" for i in range(3)])

    def test_healthcheck(self):
        status, h, body = get(self.port, "/healthcheck")
        self.assertEqual(status, 200)
        self.assertTrue(h.get("content-type", "").startswith("application/json"), h)
        h = strict_loads(body)
        instances = h.pop("instances")
        self.assertEqual(h, {"status": "ok", "prefill_instances": 2, "decode_instances": 2,
                             "request_num": 0, "prefill_policy": "least_loaded",
                             "decode_policy": "least_loaded"})
        expected = [{"role": role, "address": f"127.0.0.1:{port}", "state": "active",
                     "inflight": 0, "consecutive_failures": 0, "ejections": 0}
                    for role, ports in (("prefill", self.cluster.prefill_ports),
                                        ("decode", self.cluster.decode_ports))
                    for port in ports]
        self.assertEqual(instances, expected)

    def test_healthcheck_counts_instances(self):
        c = self.start_cluster(prefillers=1, decoders=3)
        h = healthcheck(c.port)
        self.assertEqual({k: v for k, v in h.items() if k != "instances"},
                         {"status": "ok", "prefill_instances": 1, "decode_instances": 3,
                          "request_num": 0, "prefill_policy": "least_loaded",
                          "decode_policy": "least_loaded"})
        self.assertEqual([(i["role"], i["state"]) for i in h["instances"]],
                         [("prefill", "active")] + [("decode", "active")] * 3)

    def test_keep_alive_two_requests_one_connection(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            local = None
            bodies = [
                (COMPLETIONS, {"prompt": "one", "max_tokens": 2}),
                (CHAT, {"messages": [{"role": "user", "content": "two"}], "max_tokens": 3,
                        "stream": True}),
                (COMPLETIONS, {"prompt": "three", "max_tokens": 1}),
            ]
            for i, (path, obj) in enumerate(bodies):
                conn.request("POST", path, body=json.dumps(obj),
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                self.assertEqual(resp.status, 200, f"request {i}: {data!r}")
                if obj.get("stream"):
                    self.assert_token_stream(resp.status, harness._headers_dict(resp.headers),
                                             harness.parse_sse(data), obj["max_tokens"], chat=True)
                else:
                    self.assertEqual(strict_loads(data)["choices"][0]["text"],
                                     tokens_text(obj["max_tokens"]))
                # http.client drops the socket when the server announces a close; a reopened
                # socket would have another local port.
                self.assertIsNotNone(conn.sock, f"server closed the connection after request {i}")
                name = conn.sock.getsockname()
                if local is None:
                    local = name
                self.assertEqual(name, local, f"request {i} used a new connection")
        finally:
            conn.close()
        self.cluster.wait_idle()


# ----------------------------------------------------------------------------------------------
# What the backends receive


class BackendBodyTests(BaseCase):
    def test_prefill_body(self):
        client = {
            "model": "mock-model",
            "prompt": "héllo wörld 世界 🙂",
            "max_tokens": 9,
            "min_tokens": 2,
            "temperature": 0.5,
            "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": False},
            "metadata": {"nested": {"list": [1, 2.5, None, True, "ü"], "empty": {}}},
            "stop": ["\n", "ß"],
            "odd key ✓": "value \"quoted\" \\ backslash",
        }
        status, _, events = stream(self.port, COMPLETIONS, dumps_raw(client))
        self.assertEqual(status, 200, events)
        self.assertEqual(events[-1], "[DONE]")

        m, rec = self.one_record(self.cluster.prefillers, "prefillers")
        self.assertEqual(rec["method"], "POST")
        self.assertEqual(rec["target"], COMPLETIONS)
        self.assertTrue(rec["headers"].get("content-type", "").startswith("application/json"),
                        rec["headers"])
        prefill = strict_loads(body_bytes(rec))
        self.assertEqual(prefill.get("kv_transfer_params"), PREFILL_KV)
        self.assertIs(prefill.get("stream"), False)
        self.assertEqual(prefill.get("max_tokens"), 1)
        self.assertIs(type(prefill.get("max_tokens")), int)
        self.assertEqual(prefill.get("min_tokens"), 1)
        self.assertNotIn("stream_options", prefill)
        self.assertNotIn("max_completion_tokens", prefill)
        replaced = {"kv_transfer_params", "stream", "max_tokens", "min_tokens", "stream_options"}
        for key, value in client.items():
            if key not in replaced:
                self.assertIn(key, prefill)
                self.assertEqual(prefill[key], value, f"member {key!r} changed")
        self.assertEqual(set(prefill),
                         (set(client) - {"stream_options"}) | {"kv_transfer_params"})

    def test_prefill_body_max_completion_tokens(self):
        client = {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}],
                  "max_completion_tokens": 3}
        status, h, body = post_json(self.port, CHAT, client)
        self.assert_completion(status, h, body, 3, chat=True)

        _, rec = self.one_record(self.cluster.prefillers, "prefillers")
        self.assertEqual(rec["target"], CHAT)
        prefill = strict_loads(body_bytes(rec))
        self.assertEqual(prefill.get("max_completion_tokens"), 1)
        self.assertEqual(prefill.get("max_tokens"), 1)
        self.assertEqual(prefill.get("min_tokens"), 1)
        self.assertIs(prefill.get("stream"), False)
        self.assertEqual(prefill.get("kv_transfer_params"), PREFILL_KV)
        self.assertEqual(prefill.get("messages"), client["messages"])

        _, drec = self.one_record(self.cluster.decoders, "decoders")
        decode = strict_loads(body_bytes(drec))
        self.assertEqual(decode["max_completion_tokens"], 3)
        self.assertNotIn("max_tokens", decode)
        self.assertNotIn("min_tokens", decode)
        self.assertNotIn("stream", decode)

    def test_raw_members_spliced_verbatim(self):
        # Odd spacing, escapes, a number that re-serialization would rewrite (0.70 -> 0.7) and a
        # \u escape that a re-serializer would decode: every kept member must arrive byte for byte.
        members = [
            b'"prompt": "h\xc3\xa9llo \\"quoted\\""',
            b'"temperature" :0.70',
            b'"extra":  {"a" : [1, 2.50, {"b": null}] , "c":"caf\\u00e9 \\ud83d\\ude00"}',
            b'"max_tokens": 3',
        ]
        raw = b'{ ' + b' ,\n '.join(members) + b' }'
        status, h, body = post_json(self.port, COMPLETIONS, raw)
        self.assert_completion(status, h, body, 3, chat=False)

        _, prec = self.one_record(self.cluster.prefillers, "prefillers")
        _, drec = self.one_record(self.cluster.decoders, "decoders")
        prefill, decode = body_bytes(prec), body_bytes(drec)
        for member in members[:3]:
            self.assertIn(member, prefill, f"prefill body {prefill!r}")
            self.assertIn(member, decode, f"decode body {decode!r}")
        self.assertIn(members[3], decode, f"decode body {decode!r}")
        self.assertNotIn(members[3], prefill, f"prefill body {prefill!r}")
        strict_loads(prefill)
        strict_loads(decode)

    def test_decode_body(self):
        client = {
            "model": "mock-model",
            "prompt": ["first 🙂", "second"],
            "max_tokens": 4,
            "min_tokens": 2,
            "stream": True,
            "stream_options": {"include_usage": True},
            "seed": 7,
            "logit_bias": {"50256": -100},
            "nested": {"deep": {"deeper": [{"x": "ÿ"}]}},
        }
        raw = dumps_raw(client)
        status, _, events = stream(self.port, COMPLETIONS, raw)
        self.assertEqual(status, 200, events)
        self.assertEqual(events[-1], "[DONE]")

        pmock, prec = self.one_record(self.cluster.prefillers, "prefillers")
        _, drec = self.one_record(self.cluster.decoders, "decoders")
        self.assertEqual(drec["method"], "POST")
        self.assertEqual(drec["target"], COMPLETIONS)
        request_id = drec["headers"].get("x-request-id")
        decode_raw = body_bytes(drec)
        decode = strict_loads(decode_raw)
        for key, value in client.items():
            self.assertIn(key, decode)
            self.assertEqual(decode[key], value, f"member {key!r} changed")
        self.assertEqual(set(decode), set(client) | {"kv_transfer_params"})
        expected_kv = mock_kv_bytes(pmock.name, request_id, pmock.port)
        # The object the prefiller returned, which names that prefiller.
        self.assertEqual(decode["kv_transfer_params"], json.loads(expected_kv))
        self.assertEqual(decode["kv_transfer_params"]["remote_engine_id"], pmock.name)
        self.assertEqual(decode["kv_transfer_params"]["remote_port"], pmock.port)
        # ... copied verbatim, not re-serialized.
        self.assertIn(b'"kv_transfer_params":' + expected_kv, decode_raw)

    def test_client_kv_transfer_params_is_replaced(self):
        client = {"prompt": "x", "max_tokens": 2,
                  "kv_transfer_params": {"do_remote_prefill": True, "client": "junk"}}
        status, h, body = post_json(self.port, COMPLETIONS, client)
        self.assert_completion(status, h, body, 2, chat=False)
        pmock, prec = self.one_record(self.cluster.prefillers, "prefillers")
        _, drec = self.one_record(self.cluster.decoders, "decoders")
        self.assertEqual(strict_loads(body_bytes(prec))["kv_transfer_params"], PREFILL_KV)
        kv = strict_loads(body_bytes(drec))["kv_transfer_params"]
        self.assertEqual(kv["remote_engine_id"], pmock.name)
        self.assertNotIn("client", kv)

    def test_prefill_without_kv_decode_body_identical(self):
        raw = (b'{"model": "mock-model",  "prompt": "no kv \xe2\x9c\x93", "max_tokens": 3,'
               b' "stream": true, "mock_fault":"prefill_no_kv", "extra": {"k": [1, 2]} }')
        status, h, events = stream(self.port, COMPLETIONS, raw)
        self.assert_token_stream(status, h, events, 3, chat=False)
        _, prec = self.one_record(self.cluster.prefillers, "prefillers")
        self.assertEqual(strict_loads(body_bytes(prec))["kv_transfer_params"], PREFILL_KV)
        _, drec = self.one_record(self.cluster.decoders, "decoders")
        self.assertEqual(body_bytes(drec), raw)

    def test_request_id_and_no_authorization(self):
        status, h, body = post_json(self.port, COMPLETIONS, {"prompt": "x", "max_tokens": 2})
        self.assert_completion(status, h, body, 2, chat=False)
        _, prec = self.one_record(self.cluster.prefillers, "prefillers")
        _, drec = self.one_record(self.cluster.decoders, "decoders")
        pid = prec["headers"].get("x-request-id")
        did = drec["headers"].get("x-request-id")
        self.assertIsNotNone(pid, prec["headers"])
        self.assertRegex(pid, UUID_RE)
        self.assertEqual(pid, did)
        self.assertNotIn("authorization", prec["headers"])
        self.assertNotIn("authorization", drec["headers"])

    def test_request_ids_are_fresh(self):
        for i in range(3):
            status, _, body = post_json(self.port, COMPLETIONS, {"prompt": f"p{i}", "max_tokens": 1})
            self.assertEqual(status, 200, body)
        ids = [r["headers"].get("x-request-id") for _, r in self.records(self.cluster.prefillers)]
        self.assertEqual(len(ids), 3)
        self.assertEqual(len(set(ids)), 3, ids)


class AuthorizationTests(BaseCase):
    proxy_env = {"OPENAI_API_KEY": "sk-e2e-secret"}

    def test_bearer_key_on_both_requests(self):
        status, h, events = stream(self.port, CHAT, {
            "messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "stream": True})
        self.assert_token_stream(status, h, events, 2, chat=True)
        _, prec = self.one_record(self.cluster.prefillers, "prefillers")
        _, drec = self.one_record(self.cluster.decoders, "decoders")
        self.assertEqual(prec["headers"].get("authorization"), "Bearer sk-e2e-secret")
        self.assertEqual(drec["headers"].get("authorization"), "Bearer sk-e2e-secret")
        self.assertEqual(prec["headers"].get("x-request-id"), drec["headers"].get("x-request-id"))
        self.assertRegex(prec["headers"].get("x-request-id", ""), UUID_RE)


# ----------------------------------------------------------------------------------------------
# Concurrency


def _one_stream(port, i):
    chat = i % 2 == 1
    n = 3 + i % 4
    if chat:
        obj = {"messages": [{"role": "user", "content": f"client {i}"}], "max_tokens": n,
               "stream": True}
    else:
        obj = {"prompt": f"client {i}", "max_tokens": n, "stream": True}
    status, h, events = stream(port, CHAT if chat else COMPLETIONS, obj, timeout=60)
    return chat, n, status, h, events


def _one_request(port, i):
    if i % 2:
        return _one_stream(port, i)
    n = 1 + i % 5
    status, h, body = post_json(port, COMPLETIONS, {"prompt": f"client {i}", "max_tokens": n},
                                timeout=60)
    return None, n, status, h, body


class ConcurrencyTests(BaseCase):
    prefill_args = ("--prefill-delay-ms", "200")
    decode_args = ("--token-interval-ms", "20")

    def test_16_concurrent_streams_spread_over_backends(self):
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda i: _one_stream(self.port, i), range(16)))
        for i, (chat, n, status, h, events) in enumerate(results):
            with self.subTest(client=i):
                self.assert_token_stream(status, h, events, n, chat=chat)
        prefill = [mock_stats(m.port)["prefill"] for m in self.cluster.prefillers]
        decode = [mock_stats(m.port)["decode"] for m in self.cluster.decoders]
        self.assertEqual(sum(prefill), 16, prefill)
        self.assertEqual(sum(decode), 16, decode)
        self.assertTrue(all(c > 0 for c in prefill), f"a prefiller got nothing: {prefill}")
        self.assertTrue(all(c > 0 for c in decode), f"a decoder got nothing: {decode}")
        self.cluster.wait_idle()

    def test_workers_2_with_32_concurrent_requests(self):
        c = self.start_cluster(proxy_args=("--workers", "2"), prefill_args=(),
                               decode_args=("--token-interval-ms", "5"))
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            results = list(pool.map(lambda i: _one_request(c.port, i), range(32)))
        for i, (chat, n, status, h, payload) in enumerate(results):
            with self.subTest(client=i):
                if chat is None:
                    self.assert_completion(status, h, payload, n, chat=False)
                else:
                    self.assert_token_stream(status, h, payload, n, chat=chat)
        c.wait_idle()
        self.assertEqual(sum(mock_stats(m.port)["decode"] for m in c.decoders), 32)


# ----------------------------------------------------------------------------------------------
# Bad input: answered by the proxy itself, in vLLM's error shape, no backend reached


class BadInputTests(BaseCase):
    proxy_args = ("--max-body-bytes", "1000")

    def check(self, method, path, body, expected_status):
        status, h, data = request(self.port, method, path, body)
        self.assert_vllm_error(status, h, data, expected_status)
        self.assert_no_backend_request()
        self.assertEqual(healthcheck(self.port)["request_num"], 0)

    def test_not_json(self):
        self.check("POST", COMPLETIONS, b"this is not json", 400)

    def test_truncated_json(self):
        self.check("POST", CHAT, b'{"messages": [{"role": "user", "content": "x"}', 400)

    def test_json_array(self):
        self.check("POST", COMPLETIONS, b'[{"prompt": "x"}]', 400)

    def test_json_string(self):
        self.check("POST", COMPLETIONS, b'"prompt"', 400)

    def test_empty_body(self):
        self.check("POST", COMPLETIONS, b"", 400)

    def test_trailing_garbage(self):
        self.check("POST", COMPLETIONS, b'{"prompt": "x", "max_tokens": 2} garbage', 400)

    def test_neither_prompt_nor_messages(self):
        self.check("POST", COMPLETIONS, b'{"model": "m", "max_tokens": 2}', 400)
        self.check("POST", CHAT, b'{"model": "m", "max_tokens": 2}', 400)

    def test_unknown_path(self):
        self.check("POST", "/v1/nothing", b'{"prompt": "x"}', 404)
        self.check("GET", "/nothing", None, 404)

    def test_get_completions(self):
        self.check("GET", COMPLETIONS, None, 405)
        self.check("GET", CHAT, None, 405)

    def test_post_healthcheck(self):
        self.check("POST", "/healthcheck", b"{}", 405)

    def test_body_too_large(self):
        prefix, suffix = b'{"prompt": "', b'", "max_tokens": 1}'
        body = prefix + b"x" * (1001 - len(prefix) - len(suffix)) + suffix
        self.assertEqual(len(body), 1001)
        self.check("POST", COMPLETIONS, body, 413)

    def test_body_at_limit_accepted(self):
        prefix, suffix = b'{"prompt": "', b'", "max_tokens": 1}'
        body = prefix + b"x" * (1000 - len(prefix) - len(suffix)) + suffix
        status, h, data = post_json(self.port, COMPLETIONS, body)
        self.assert_completion(status, h, data, 1, chat=False)


# ----------------------------------------------------------------------------------------------
# Upstream errors


class UpstreamErrorTests(BaseCase):
    proxy_args = ("--max-retries", "1")

    def test_prefill_json_error_passed_through(self):
        for path, obj in [(COMPLETIONS, {"prompt": "x", "max_tokens": 2,
                                         "mock_fault": "prefill_error"}),
                          (CHAT, {"messages": [{"role": "user", "content": "x"}], "max_tokens": 2,
                                  "stream": True, "mock_fault": "prefill_error"})]:
            with self.subTest(path=path):
                status, h, body = post_json(self.port, path, obj)
                self.assertEqual(status, 500, body)
                self.assertEqual(strict_loads(body), {"error": {
                    "message": "mock-vllm: prefill failure injected",
                    "type": "InternalServerError", "param": None, "code": 500}})
                self.cluster.wait_idle()
        self.assertEqual(self.total_stats(self.cluster.decoders, "requests"), 0)

    def test_prefill_text_error_wrapped_as_json(self):
        status, h, body = post_json(self.port, COMPLETIONS, {
            "prompt": "x", "max_tokens": 2, "mock_fault": "prefill_text_error"})
        err = self.assert_vllm_error(status, h, body, 502)
        self.assertEqual(err["message"], "bad gateway")
        self.cluster.wait_idle()
        self.assertEqual(self.total_stats(self.cluster.decoders, "requests"), 0)

    def test_decode_error_status_and_body(self):
        expected = {"error": {"message": "This model's maximum context length is 32 tokens.",
                              "type": "BadRequestError", "param": None, "code": 400}}
        for stream_flag in (False, True):
            with self.subTest(stream=stream_flag):
                status, h, body = post_json(self.port, COMPLETIONS, {
                    "prompt": "x", "max_tokens": 2, "stream": stream_flag,
                    "mock_fault": "decode_error"})
                self.assertEqual(status, 400, body)
                self.assertTrue(h.get("content-type", "").startswith("application/json"), h)
                self.assertEqual(strict_loads(body), expected)
                self.cluster.wait_idle()

    def test_decode_cut_mid_stream_ends_with_error_event(self):
        status, h, events = stream(self.port, CHAT, {
            "messages": [{"role": "user", "content": "x"}], "max_tokens": 6, "stream": True,
            "mock_fault": "decode_cut"})
        self.assertEqual(status, 200, events)
        self.assertGreaterEqual(len(events), 2, events)
        self.assertEqual(events[-1], "[DONE]", events)
        last = strict_loads(events[-2])
        self.assertIsInstance(last.get("error"), dict, events)
        self.assertIsInstance(last["error"].get("message"), str, events)
        tokens = [strict_loads(e)["choices"][0]["delta"]["content"] for e in events[:-2]]
        self.assertEqual(tokens, [" tok0", " tok1", " tok2"], events)
        self.cluster.wait_idle()

    def test_decode_cut_non_stream_is_an_error(self):
        status, h, body = post_json(self.port, COMPLETIONS, {
            "prompt": "x", "max_tokens": 4, "mock_fault": "decode_cut"})
        self.assertGreaterEqual(status, 500, body)
        self.assert_vllm_error(status, h, body, status)
        self.cluster.wait_idle()


class RetryTests(BaseCase):
    proxy_args = ("--max-retries", "3", "--retry-delay", "0.001")

    def test_prefill_500_is_retried(self):
        status, _, body = post_json(self.port, COMPLETIONS, {
            "prompt": "x", "max_tokens": 2, "mock_fault": "prefill_error"})
        self.assertEqual(status, 500, body)
        self.assertEqual(self.total_stats(self.cluster.prefillers, "requests"), 3)
        self.assertEqual(self.total_stats(self.cluster.decoders, "requests"), 0)
        self.cluster.wait_idle()

    def test_decode_400_is_not_retried(self):
        status, _, body = post_json(self.port, COMPLETIONS, {
            "prompt": "x", "max_tokens": 2, "mock_fault": "decode_error"})
        self.assertEqual(status, 400, body)
        self.assertEqual(self.total_stats(self.cluster.prefillers, "requests"), 1)
        self.assertEqual(self.total_stats(self.cluster.decoders, "requests"), 1)
        self.cluster.wait_idle()


# ----------------------------------------------------------------------------------------------
# Client disconnects


class DisconnectTests(BaseCase):
    def disconnect_during_prefill(self, cluster, body):
        sock = open_raw(cluster.port, "POST", COMPLETIONS, body)
        try:
            wait_until(lambda: self.total_stats(cluster.prefillers, "prefill") >= 1, 10,
                       message="the prefill request never reached a prefiller")
            time.sleep(0.3)
        finally:
            sock.close()
        wait_until(lambda: self.total_stats(cluster.prefillers, "client_disconnects") >= 1, 10,
                   message="the proxy did not close the prefill connection",
                   describe=lambda: [mock_stats(m.port) for m in cluster.prefillers])
        cluster.wait_idle()
        self.assertEqual(self.total_stats(cluster.decoders, "requests"), 0,
                         "a decode request was sent for a client that had left")

    def test_disconnect_during_prefill_hang(self):
        self.disconnect_during_prefill(self.cluster, {
            "prompt": "x", "max_tokens": 2, "stream": True, "mock_fault": "prefill_hang"})

    def test_disconnect_during_prefill_delay(self):
        c = self.start_cluster(prefill_args=("--prefill-delay-ms", "2000"))
        self.disconnect_during_prefill(c, {"prompt": "x", "max_tokens": 2})
        # Still serves afterwards (load released, prefiller usable).
        status, h, body = post_json(c.port, COMPLETIONS, {"prompt": "y", "max_tokens": 2})
        self.assert_completion(status, h, body, 2, chat=False)

    def test_disconnect_during_stream(self):
        sock = open_raw(self.port, "POST", COMPLETIONS, {
            "prompt": "x", "max_tokens": 4, "stream": True, "mock_fault": "decode_hang"})
        try:
            got = read_until(sock, lambda b: re.search(rb"data:[^\n]*tok0[^\n]*\n\r?\n", b))
            self.assertIn(b" 200 ", got.split(b"\r\n", 1)[0])
            wait_until(lambda: self.total_stats(self.cluster.decoders, "active_streams") == 1, 10,
                       message="decoder stream not active")
        finally:
            sock.close()
        wait_until(lambda: self.total_stats(self.cluster.decoders, "client_disconnects") >= 1, 10,
                   message="the proxy did not close the decode connection",
                   describe=lambda: [mock_stats(m.port) for m in self.cluster.decoders])
        self.cluster.wait_idle()
        wait_until(lambda: self.total_stats(self.cluster.decoders, "active_streams") == 0, 10,
                   message="decoder stream still active")

    def test_disconnect_during_non_stream_decode(self):
        sock = open_raw(self.port, "POST", COMPLETIONS, {
            "prompt": "x", "max_tokens": 4, "mock_fault": "decode_hang"})
        try:
            wait_until(lambda: self.total_stats(self.cluster.decoders, "decode") >= 1, 10,
                       message="the decode request never reached a decoder")
            time.sleep(0.3)
        finally:
            sock.close()
        wait_until(lambda: self.total_stats(self.cluster.decoders, "client_disconnects") >= 1, 10,
                   message="the proxy did not close the decode connection",
                   describe=lambda: [mock_stats(m.port) for m in self.cluster.decoders])
        self.cluster.wait_idle()


# ----------------------------------------------------------------------------------------------
# Command line


class CommandLineTests(unittest.TestCase):
    REFERENCE_FLAGS = ["--host", "--port", "--prefiller-hosts", "--prefiller-ports",
                       "--decoder-hosts", "--decoder-ports", "--max-retries", "--retry-delay",
                       "--max-waiting-retries", "--waiting-retry-interval", "--workers",
                       "--log-level"]

    def test_mismatched_prefiller_lists(self):
        code, out = run_proxy(["--port", "0", "--prefiller-hosts", "a", "b",
                               "--prefiller-ports", "1"])
        self.assertEqual(code, 2, out)
        self.assertIn("prefiller", out)
        self.assertNotIn("listening on", out)

    def test_mismatched_decoder_lists(self):
        code, out = run_proxy(["--port", "0", "--decoder-hosts", "a",
                               "--decoder-ports", "1", "2"])
        self.assertEqual(code, 2, out)
        self.assertIn("decoder", out)

    def test_help(self):
        code, out = run_proxy(["--help"])
        self.assertEqual(code, 0, out)
        for flag in self.REFERENCE_FLAGS:
            self.assertRegex(out, re.escape(flag) + r"(?![\w-])", f"--help does not mention {flag}")


if __name__ == "__main__":
    unittest.main()
