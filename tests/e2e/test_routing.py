"""Routing policies end to end: fair ties under the default policy, cache_aware conversation
affinity (one proxy and two replicas), /reset_prefix_cache, consistent_hash on X-Session-Id, bad
input, and the policies in /healthcheck and the access log.

Which instance served a request is read from the mocks themselves (/mock/stats, /mock/requests),
never from the proxy, so a proxy that lies about its routing still fails.

Run by hand: cd tests/e2e && python3 -m unittest -v test_routing
"""

import json
import re
import unittest

from harness import (ClusterTestCase, Process, get, healthcheck, mock_requests,
                     mock_stats, post_json, proxy_argv, clean_env, run_proxy, wait_until)

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
CACHE_ARGS = ("--prefix-cache-blocks", "4096")


def text(n, seed=0):
    """n bytes of text distinct per seed (no JSON escapes)."""
    words = []
    i = 0
    while sum(len(w) + 1 for w in words) < n + 1:
        words.append("w%s%s%s%s" % (chr(ord("a") + seed % 26), chr(ord("a") + (seed // 26) % 26),
                                    "abcdefghij"[(i * 7 + seed) % 10] * 2,
                                    chr(ord("a") + (i // 10) % 26)))
        i += 1
    return " ".join(words)[:n]


def metric_samples(port, family):
    """{labels string: value} for every sample of `family` in the proxy's /metrics."""
    status, _, body = get(port, "/metrics")
    if status != 200:
        raise AssertionError(f"/metrics answered {status}")
    out = {}
    for line in body.decode().splitlines():
        m = re.match(r"^" + re.escape(family) + r"(\{[^}]*\})?\s+(\S+)$", line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


def prefill_bodies(port):
    """The bodies (parsed) of the prefill requests a mock received."""
    out = []
    for r in mock_requests(port):
        if r["method"] != "POST" or not r["body"]:
            continue
        body = json.loads(r["body"])
        if (body.get("kv_transfer_params") or {}).get("do_remote_decode"):
            out.append(body)
    return out


def chat(port, messages, headers=None):
    status, _, raw = post_json(port, CHAT, {"model": "mock-model", "messages": messages,
                                            "max_tokens": 2}, headers)
    if status != 200:
        raise AssertionError(f"chat answered {status}: {raw[:300]!r}")
    return raw


def conversation_turns(conv, turns):
    """The message lists of each turn of conversation `conv`: history + a new ~1 KiB message."""
    messages = [{"role": "system", "content": f"conversation {conv}: " + text(200, seed=500 + conv)}]
    out = []
    for t in range(turns):
        messages = messages + [{"role": "user", "content": text(1024, seed=conv * 10 + t)}]
        out.append(list(messages))
        messages = messages + [{"role": "assistant", "content": f"answer {conv}.{t}"}]
    return out


def prefiller_of(cluster, marker):
    """The index of the one prefiller whose prefill requests include a last user message equal to
    `marker`; fails if none or several got it."""
    hits = []
    for i, port in enumerate(cluster.prefill_ports):
        for body in prefill_bodies(port):
            msgs = body.get("messages") or []
            if msgs and msgs[-1].get("content") == marker:
                hits.append(i)
    if len(hits) != 1:
        raise AssertionError(f"turn {marker[:20]!r}... reached prefillers {hits}")
    return hits[0]


class FairTiesTest(ClusterTestCase):
    prefillers = 4
    decoders = 4

    def test_sequential_requests_spread_evenly(self):
        for k in range(40):
            status, _, raw = post_json(self.port, COMPLETIONS,
                                       {"model": "m", "prompt": f"same prompt {k % 3}",
                                        "max_tokens": 2})
            self.assertEqual(status, 200, raw)
        self.cluster.wait_idle()
        self.assertEqual([mock_stats(p)["prefill"] for p in self.cluster.prefill_ports],
                         [10] * 4)
        self.assertEqual([mock_stats(p)["decode"] for p in self.cluster.decode_ports], [10] * 4)


class CacheAwareTest(ClusterTestCase):
    prefillers = 4
    decoders = 2
    prefill_args = CACHE_ARGS
    proxy_args = ("--prefill-policy", "cache_aware")

    CONVERSATIONS = 8
    TURNS = 4

    def run_conversations(self, ports):
        """Sends every conversation's turns in order, turn t through ports[t % len(ports)].
        Returns {conv: [turn message lists]}."""
        convs = {c: conversation_turns(c, self.TURNS) for c in range(self.CONVERSATIONS)}
        for t in range(self.TURNS):
            for c in self.order(t):
                chat(ports[t % len(ports)], convs[c][t])
        return convs

    def order(self, t):
        """The conversations in turn t's sending order: rotated by t, so that a policy blind to
        the prompt (round_robin) does not keep a conversation in place by accident."""
        n = self.CONVERSATIONS
        return [(c + t) % n for c in range(n)]

    def check_affinity(self, convs):
        firsts = set()
        for c, turns in convs.items():
            where = [prefiller_of(self.cluster, turn[-1]["content"]) for turn in turns]
            self.assertEqual(where, [where[0]] * len(where), f"conversation {c} moved: {where}")
            firsts.add(where[0])
        self.assertGreater(len(firsts), 1, "every conversation went to one prefiller")

    def test_conversations_stick_and_hit_the_cache(self):
        port = self.port
        # First turns alone, then the later ones: the later turns' hit ratio is what is checked.
        convs = {c: conversation_turns(c, self.TURNS) for c in range(self.CONVERSATIONS)}
        for c in self.order(0):
            chat(port, convs[c][0])
        self.cluster.wait_idle()
        before = [mock_stats(p) for p in self.cluster.prefill_ports]
        for t in range(1, self.TURNS):
            for c in self.order(t):
                chat(port, convs[c][t])
        self.cluster.wait_idle()
        after = [mock_stats(p) for p in self.cluster.prefill_ports]
        prompt = sum(a["prompt_tokens"] - b["prompt_tokens"] for a, b in zip(after, before))
        cached = sum(a["cached_tokens"] - b["cached_tokens"] for a, b in zip(after, before))
        self.assertGreater(prompt, 0)
        self.assertGreater(cached, 0.5 * prompt, f"cached {cached} of {prompt} prompt tokens")
        self.check_affinity(convs)

        decisions = metric_samples(port, "glm_proxy_route_decisions_total")
        hits = sum(v for k, v in decisions.items()
                   if 'reason="prefix_hit"' in k and 'role="prefill"' in k
                   and 'policy="cache_aware"' in k)
        self.assertGreater(hits, 0, decisions)
        self.assertGreater(sum(metric_samples(port, "glm_proxy_prefill_cached_tokens_total")
                               .values()), 0)
        self.assertGreater(sum(metric_samples(port, "glm_proxy_prefix_index_entries").values()),
                           0)

    def test_two_replicas_keep_each_conversation_on_one_prefiller(self):
        second = Process("glm-proxy-2", proxy_argv(self.cluster.prefill_ports,
                                                   self.cluster.decode_ports, self.proxy_args),
                         env=clean_env())
        self.addCleanup(second.close_log)
        self.addCleanup(second.stop)
        second.wait_listening()
        convs = self.run_conversations([self.port, second.port])
        self.check_affinity(convs)

    def test_reset_prefix_cache_empties_the_index(self):
        for c in range(4):
            chat(self.port, conversation_turns(c, 1)[0])
        self.cluster.wait_idle()
        entries = metric_samples(self.port, "glm_proxy_prefix_index_entries")
        self.assertGreater(sum(entries.values()), 0, entries)
        status, _, raw = post_json(self.port, "/reset_prefix_cache", b"")
        self.assertEqual(status, 200, raw)
        entries = metric_samples(self.port, "glm_proxy_prefix_index_entries")
        self.assertEqual(len(entries), 4, entries)
        self.assertEqual(sum(entries.values()), 0, entries)
        # The mocks' caches were reset too.
        self.assertEqual([mock_stats(p)["prefix_cache_blocks"] for p in self.cluster.prefill_ports],
                         [0] * 4)

    def test_token_ids_and_string_lists_still_route(self):
        for prompt in (list(range(1000, 1300)), [text(300, seed=1), text(300, seed=2)]):
            for _ in range(2):
                status, _, raw = post_json(self.port, COMPLETIONS,
                                           {"model": "m", "prompt": prompt, "max_tokens": 2})
                self.assertEqual(status, 200, raw)
        self.cluster.wait_idle()
        self.assertEqual(sum(mock_stats(p)["prefill"] for p in self.cluster.prefill_ports), 4)


class ConsistentHashTest(ClusterTestCase):
    prefillers = 4
    decoders = 2
    proxy_args = ("--prefill-policy", "consistent_hash")

    def test_session_id_pins_a_prefiller(self):
        where = {}
        for sid in [f"session-{k}" for k in range(8)]:
            for k in range(10):
                status, _, raw = post_json(self.port, COMPLETIONS,
                                           {"model": "m", "prompt": f"{sid} request {k}",
                                            "max_tokens": 2}, {"X-Session-Id": sid})
                self.assertEqual(status, 200, raw)
        self.cluster.wait_idle()
        for i, port in enumerate(self.cluster.prefill_ports):
            for body in prefill_bodies(port):
                sid = body["prompt"].split(" ")[0]
                where.setdefault(sid, set()).add(i)
        self.assertEqual(len(where), 8, where)
        for sid, places in where.items():
            self.assertEqual(len(places), 1, f"{sid} reached prefillers {places}")
        self.assertGreater(len(set().union(*where.values())), 1, where)


class BadFlagsTest(unittest.TestCase):
    def test_bad_policy_and_threshold_exit_2_naming_the_flag(self):
        for args, flag in ((["--prefill-policy", "bogus"], "--prefill-policy"),
                           (["--cache-threshold", "1.5"], "--cache-threshold")):
            code, out = run_proxy(["--port", "0"] + args)
            self.assertEqual(code, 2, out)
            self.assertIn(flag, out)


class ObservabilityTest(ClusterTestCase):
    prefillers = 2
    decoders = 2
    prefill_args = CACHE_ARGS
    proxy_args = ("--prefill-policy", "cache_aware", "--decode-policy", "round_robin")

    def test_healthcheck_and_access_line_show_the_routing(self):
        h = healthcheck(self.port)
        self.assertEqual(h.get("prefill_policy"), "cache_aware", h)
        self.assertEqual(h.get("decode_policy"), "round_robin", h)
        chat(self.port, conversation_turns(0, 1)[0])
        self.cluster.wait_idle()
        line = wait_until(
            lambda: next((l for l in self.cluster.proxy.read_log().splitlines()
                          if "endpoint=/v1/chat/completions" in l and "status=200" in l), None),
            message="access line of the chat request")
        m = re.search(r"prefill_route=(\S+) decode_route=(\S+) predicted_tokens=(\d+)$", line)
        self.assertIsNotNone(m, line)
        self.assertNotEqual(m.group(1), "-", line)
        self.assertEqual(m.group(2), "round_robin", line)


if __name__ == "__main__":
    unittest.main()
