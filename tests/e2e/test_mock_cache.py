"""mock-vllm's simulated prefix cache: truthful usage (prompt_tokens, cached_tokens), LRU eviction
tail first, blocks cached only when a prefill completes, the FIFO prefill gate, reset, stats.

The benchmark of routing policies (bench/run_routing.sh) scores glm-proxy against these figures,
so they are checked here against an independent model of the mock's rules, written from its
README: the prompt is rendered (chat: "<|ROLE|>\\n" + content + "<|end|>\\n" per message, then
"<|assistant|>\\n"), one token is 4 bytes, a block is 16 tokens (64 bytes), only full blocks are
cached, and a hit covers at most the full blocks before the prompt's last token.

No timing assertions: order and overlap are established by polling /mock/stats.

Run by hand: cd tests/e2e && python3 -m unittest -v test_mock_cache
"""

import json
import math
import socket
import threading
import unittest

from harness import (PREFILL_KV, Cluster, get, mock_stats, post_json, read_until, open_raw,
                     start_mock, stream, wait_until)

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"
BLOCK_TOKENS = 16
CHARS = 4
BLOCK_BYTES = BLOCK_TOKENS * CHARS


def text(n, seed=0):
    """n bytes of text distinct per seed (no "tok<digits>" words, no JSON escapes)."""
    words = []
    i = 0
    while sum(len(w) + 1 for w in words) < n + 1:
        words.append("w%s%s" % (chr(ord("a") + seed % 26), "abcdefghij"[(i * 7 + seed) % 10] * 3))
        words[-1] += chr(ord("a") + (i // 10) % 26) + chr(ord("a") + (i // 260) % 26)
        i += 1
    return " ".join(words)[:n]


def render_chat(messages):
    return "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in messages) + "<|assistant|>\n"


def tokens_of(rendered):
    return max(1, math.ceil(len(rendered.encode("utf-8")) / CHARS))


def expected_cached(rendered, cached_prefix_bytes):
    """What the mock must report when the first `cached_prefix_bytes` bytes of `rendered` are
    cached (in whole blocks) and the rest is not."""
    tokens = tokens_of(rendered)
    most = (tokens - 1) // BLOCK_TOKENS
    return min(cached_prefix_bytes // BLOCK_BYTES, most) * BLOCK_TOKENS


def prefill(port, prompt=None, messages=None, headers=None):
    """One prefill request (do_remote_decode) -> the usage of its answer."""
    if messages is not None:
        path, body = CHAT, {"model": "mock-model", "messages": messages, "max_tokens": 1}
    else:
        path, body = COMPLETIONS, {"model": "mock-model", "prompt": prompt, "max_tokens": 1}
    body["kv_transfer_params"] = PREFILL_KV
    status, _, raw = post_json(port, path, body, headers)
    if status != 200:
        raise AssertionError(f"prefill answered {status}: {raw[:300]!r}")
    return json.loads(raw)["usage"]


def cached(usage):
    return usage["prompt_tokens_details"]["cached_tokens"]


class MockCase(unittest.TestCase):
    def mock(self, *args, **kwargs):
        p = start_mock(*args, **kwargs)
        self.addCleanup(p.close_log)
        self.addCleanup(p.stop)
        return p


class PrefixCacheTest(MockCase):
    def setUp(self):
        super().setUp()
        self.m = self.mock("--prefix-cache-blocks", "64")

    def test_repeat_hits_all_full_blocks_before_the_last_token(self):
        prompt = text(640)  # 160 tokens, 10 blocks
        first = prefill(self.m.port, prompt)
        self.assertEqual(first["prompt_tokens"], 160)
        self.assertEqual(cached(first), 0)
        second = prefill(self.m.port, prompt)
        self.assertEqual(second["prompt_tokens"], 160)
        # The last token is always computed: its block (block 9) cannot be a hit.
        self.assertEqual(cached(second), 144)
        self.assertEqual(cached(second), expected_cached(prompt, 640))
        # 650 bytes: 163 tokens; its 10 full blocks are all before the last token.
        longer = prompt + text(10, seed=3)
        self.assertEqual(cached(prefill(self.m.port, longer)), 160)

    def test_shared_prefix_then_divergence(self):
        base = text(64 * 5, seed=1)
        a = base + text(300, seed=2)
        b = base + text(300, seed=4)
        self.assertEqual(cached(prefill(self.m.port, a)), 0)
        self.assertEqual(cached(prefill(self.m.port, b)), 5 * BLOCK_TOKENS)
        # Diverging inside a block: only the blocks before it hit.
        c = base[:64 * 3 + 10] + "X" + base[64 * 3 + 11:] + text(300, seed=2)
        self.assertEqual(cached(prefill(self.m.port, c)), 3 * BLOCK_TOKENS)

    def test_blocks_are_chained(self):
        # The same 64 bytes after a different prefix are a different block.
        block = text(64, seed=5)
        prefill(self.m.port, text(64, seed=6) + block + text(100, seed=7))
        self.assertEqual(cached(prefill(self.m.port, text(64, seed=8) + block + text(100, seed=7))),
                         0)

    def test_chat_turn_hits_the_previous_turn(self):
        messages = [{"role": "system", "content": text(200, seed=9)},
                    {"role": "user", "content": text(1000, seed=10)}]
        first = prefill(self.m.port, messages=messages)
        r1 = render_chat(messages)
        self.assertEqual(first["prompt_tokens"], tokens_of(r1))
        self.assertEqual(cached(first), 0)
        messages += [{"role": "assistant", "content": " tok0 tok1 tok2"},
                     {"role": "user", "content": text(1000, seed=11)}]
        r2 = render_chat(messages)
        self.assertTrue(r2.startswith(r1))
        second = prefill(self.m.port, messages=messages)
        self.assertEqual(second["prompt_tokens"], tokens_of(r2))
        self.assertEqual(cached(second), expected_cached(r2, len(r1)))
        self.assertGreater(cached(second), 0)

    def test_content_parts_and_role_order_render_alike(self):
        plain = [{"role": "user", "content": text(640, seed=12)}]
        prefill(self.m.port, messages=plain)
        parts = [{"content": [{"type": "text", "text": text(640, seed=12)}], "role": "user"}]
        self.assertEqual(cached(prefill(self.m.port, messages=parts)),
                         expected_cached(render_chat(plain), len(render_chat(plain))))

    def test_tools_change_the_prefix(self):
        messages = [{"role": "user", "content": text(640, seed=13)}]
        prefill(self.m.port, messages=messages)
        status, _, raw = post_json(self.m.port, CHAT, {
            "model": "mock-model", "messages": messages, "max_tokens": 1,
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "kv_transfer_params": PREFILL_KV})
        self.assertEqual(status, 200, raw)
        self.assertEqual(cached(json.loads(raw)["usage"]), 0)

    def test_token_id_prompt_counts_one_token_per_id(self):
        ids = list(range(1000, 1000 + 100))
        first = prefill(self.m.port, ids)
        self.assertEqual(first["prompt_tokens"], 100)
        self.assertEqual(cached(prefill(self.m.port, ids)), (99 // 16) * 16)

    def test_reset_prefix_cache_empties_it(self):
        prompt = text(640, seed=14)
        prefill(self.m.port, prompt)
        self.assertGreater(mock_stats(self.m.port)["prefix_cache_blocks"], 0)
        status, _, _ = post_json(self.m.port, "/reset_prefix_cache", b"")
        self.assertEqual(status, 200)
        self.assertEqual(mock_stats(self.m.port)["prefix_cache_blocks"], 0)
        self.assertEqual(cached(prefill(self.m.port, prompt)), 0)

    def test_stats_sum_usage(self):
        prompt = text(640, seed=15)
        prefill(self.m.port, prompt)
        prefill(self.m.port, prompt)
        s = mock_stats(self.m.port)
        self.assertEqual(s["prefill"], 2)
        self.assertEqual(s["prefills_done"], 2)
        self.assertEqual(s["prompt_tokens"], 320)
        self.assertEqual(s["cached_tokens"], 144)
        self.assertEqual(s["prefix_cache_capacity"], 64)
        self.assertEqual(s["prefix_cache_blocks"], 10)


class EvictionTest(MockCase):
    def test_least_recently_used_prompt_goes_first(self):
        m = self.mock("--prefix-cache-blocks", "64")
        prompts = [text(16 * 64 + 8, seed=20 + i) for i in range(5)]  # 16 full blocks each
        for p in prompts:
            prefill(m.port, p)
        s = mock_stats(m.port)
        self.assertEqual(s["prefix_cache_blocks"], 64)
        self.assertEqual(s["prefix_cache_evictions"], 16)
        self.assertEqual(cached(prefill(m.port, prompts[4])), 16 * BLOCK_TOKENS)
        self.assertEqual(cached(prefill(m.port, prompts[0])), 0)

    def test_a_prompt_loses_its_tail_first(self):
        m = self.mock("--prefix-cache-blocks", "20")
        p1 = text(16 * 64 + 8, seed=30)
        p2 = text(8 * 64 + 8, seed=31)
        prefill(m.port, p1)
        prefill(m.port, p2)  # 24 blocks > 20: four go, p1's last four
        self.assertEqual(cached(prefill(m.port, p1)), 12 * BLOCK_TOKENS)

    def test_unbounded_never_evicts(self):
        m = self.mock("--prefix-cache-blocks", "unbounded")
        prompts = [text(16 * 64 + 8, seed=40 + i) for i in range(10)]
        for p in prompts:
            prefill(m.port, p)
        s = mock_stats(m.port)
        self.assertEqual(s["prefix_cache_blocks"], 160)
        self.assertEqual(s["prefix_cache_capacity"], -1)
        self.assertEqual(cached(prefill(m.port, prompts[0])), 16 * BLOCK_TOKENS)


def send_in_thread(port, body, path=COMPLETIONS, results=None, order=None, key=None):
    def run():
        try:
            status, _, raw = post_json(port, path, body)
            results[key] = (status, raw)
        except Exception as e:  # noqa: BLE001 - reported by the test
            results[key] = (None, repr(e))
        if order is not None:
            order.append(key)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


class ConcurrencyTest(MockCase):
    def test_a_concurrent_identical_prefill_does_not_hit_yet(self):
        m = self.mock("--prefix-cache-blocks", "64", "--prefill-delay-ms", "1000")
        body = {"prompt": text(640, seed=50), "max_tokens": 1, "kv_transfer_params": PREFILL_KV}
        results = {}
        t1 = send_in_thread(m.port, body, results=results, key=1)
        wait_until(lambda: mock_stats(m.port)["running"] == 1, message="first prefill running")
        t2 = send_in_thread(m.port, body, results=results, key=2)
        wait_until(lambda: mock_stats(m.port)["running"] == 2, message="both prefills running")
        t1.join(30)
        t2.join(30)
        for k in (1, 2):
            status, raw = results[k]
            self.assertEqual(status, 200, raw)
            self.assertEqual(cached(json.loads(raw)["usage"]), 0)
        # Both inserted the same blocks once they completed: the third hits.
        self.assertEqual(cached(prefill(m.port, body["prompt"])), 144)

    def test_prefills_beyond_the_limit_wait_in_arrival_order(self):
        m = self.mock("--max-concurrent-prefills", "1", "--prefill-delay-ms", "1000")
        results, order, threads = {}, [], []
        for k in range(3):
            body = {"prompt": f"request {k}", "max_tokens": 1, "kv_transfer_params": PREFILL_KV}
            threads.append(send_in_thread(m.port, body, results=results, order=order, key=k))
            # The next one is sent only once this one is running or queued.
            wait_until(lambda: (mock_stats(m.port)["running"] + mock_stats(m.port)["waiting"]
                                == k + 1), message=f"request {k} admitted")
        s = mock_stats(m.port)
        self.assertEqual((s["running"], s["waiting"]), (1, 2))
        for t in threads:
            t.join(30)
        self.assertEqual(order, [0, 1, 2])
        for k in range(3):
            self.assertEqual(results[k][0], 200, results[k][1])
        s = mock_stats(m.port)
        self.assertEqual((s["running"], s["waiting"]), (0, 0))

    def test_a_client_that_leaves_the_line_frees_its_place(self):
        m = self.mock("--max-concurrent-prefills", "1", "--prefill-delay-ms", "1000")
        results = {}
        body = {"prompt": "first", "max_tokens": 1, "kv_transfer_params": PREFILL_KV}
        t1 = send_in_thread(m.port, body, results=results, key=1)
        wait_until(lambda: mock_stats(m.port)["running"] == 1, message="first running")
        leaver = open_raw(m.port, "POST", COMPLETIONS,
                          {"prompt": "leaver", "max_tokens": 1, "kv_transfer_params": PREFILL_KV})
        wait_until(lambda: mock_stats(m.port)["waiting"] == 1, message="leaver queued")
        leaver.close()
        wait_until(lambda: mock_stats(m.port)["waiting"] == 0, message="leaver left the line")
        t1.join(30)
        self.assertEqual(results[1][0], 200, results[1][1])
        # The slot is free again: a new prefill runs at once, nobody stuck in front of it.
        self.assertEqual(cached(prefill(m.port, "after")), 0)
        s = mock_stats(m.port)
        self.assertEqual(s["client_disconnects"], 1)
        self.assertEqual((s["running"], s["waiting"]), (0, 0))


    def test_sigterm_while_prefills_wait_exits_cleanly(self):
        # The sessions' coroutines are destroyed with the io_context while one holds a slot and
        # two wait for one; under the sanitizers a use-after-free there fails this test.
        m = self.mock("--max-concurrent-prefills", "1", "--prefill-delay-ms", "60000")
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for k in range(3):
            socks.append(open_raw(m.port, "POST", COMPLETIONS, {
                "prompt": f"p{k}", "max_tokens": 1, "kv_transfer_params": PREFILL_KV}))
        wait_until(lambda: (mock_stats(m.port)["running"], mock_stats(m.port)["waiting"]) == (1, 2),
                   message="one running, two waiting")
        self.assertEqual(m.stop(), 0, m.read_log())


class RolesTest(MockCase):
    def test_decoder_counts_the_same_tokens_and_reports_them_cached(self):
        d = self.mock("--chars-per-token", "4")
        prompt = text(640, seed=60)
        status, _, events = stream(d.port, COMPLETIONS, {
            "prompt": prompt, "max_tokens": 2, "stream": True,
            "stream_options": {"include_usage": True},
            "kv_transfer_params": {"do_remote_prefill": True, "do_remote_decode": False}})
        self.assertEqual(status, 200, events)
        usage = json.loads(events[-2])["usage"]
        self.assertEqual(usage["prompt_tokens"], 160)
        self.assertEqual(cached(usage), 160)

    def test_plain_instance_prefills_through_its_cache(self):
        m = self.mock("--prefix-cache-blocks", "64")
        body = {"prompt": text(640, seed=61), "max_tokens": 2}
        for want in (0, 144):
            status, _, raw = post_json(m.port, COMPLETIONS, body)
            self.assertEqual(status, 200, raw)
            self.assertEqual(cached(json.loads(raw)["usage"]), want)

    def test_off_by_default(self):
        m = self.mock("--cached-tokens", "7")
        for _ in range(2):
            usage = prefill(m.port, text(640, seed=62))
            self.assertEqual(cached(usage), 7)
            self.assertEqual(usage["prompt_tokens"], len(text(640, seed=62).split()))
        self.assertEqual(mock_stats(m.port)["prefix_cache_blocks"], 0)

    def test_bad_capacity_is_a_usage_error(self):
        import subprocess
        from harness import MOCK_VLLM_BIN
        for bad in ("-3", "lots", "12x"):
            r = subprocess.run([MOCK_VLLM_BIN, "--prefix-cache-blocks", bad], timeout=10,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            self.assertEqual(r.returncode, 2, r.stdout)


class ThroughProxyTest(unittest.TestCase):
    """The usage chunk a client gets through glm-proxy carries the prefiller's truth."""

    def test_usage_chunk_reports_the_prefillers_cache(self):
        with Cluster(prefillers=1, decoders=1,
                     prefill_args=("--prefix-cache-blocks", "64"),
                     decode_args=("--chars-per-token", "4")) as c:
            messages = [{"role": "user", "content": text(1000, seed=70)}]
            want = [0, expected_cached(render_chat(messages), len(render_chat(messages)))]
            for expected in want:
                status, _, events = stream(c.port, CHAT, {
                    "model": "mock-model", "messages": messages, "max_tokens": 4,
                    "stream": True, "stream_options": {"include_usage": True}})
                self.assertEqual(status, 200, events)
                usage = [json.loads(e)["usage"] for e in events
                         if e != "[DONE]" and json.loads(e).get("usage")]
                self.assertEqual(len(usage), 1, events)
                self.assertEqual(usage[0]["prompt_tokens"], tokens_of(render_chat(messages)))
                self.assertEqual(cached(usage[0]), expected)
            s = mock_stats(c.prefill_ports[0])
            self.assertEqual(s["cached_tokens"], want[1])


if __name__ == "__main__":
    unittest.main()
