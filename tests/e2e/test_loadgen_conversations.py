"""glm-loadgen's multi-turn conversation workload (bench/run_routing.sh's load), against mock-vllm
with a simulated prefix cache: what each turn sends (the conversation so far, the answer as
streamed, a new user message, the group's system prompt, X-Session-Id), turn order, target
alternation, and that the hit ratio it reports is the mock's own.

glm-loadgen sits next to mock-vllm in the build directory; sanitizer builds leave it out, and then
these tests are skipped.

Run by hand: cd tests/e2e && python3 -m unittest -v test_loadgen_conversations
"""

import json
import os
import subprocess
import unittest

from harness import MOCK_VLLM_BIN, TIMEOUT_SCALE, mock_requests, mock_stats, start_mock

LOADGEN_BIN = os.path.join(os.path.dirname(MOCK_VLLM_BIN), "glm-loadgen")


def run_loadgen(*args):
    r = subprocess.run([LOADGEN_BIN, "--json-only", *map(str, args)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=120 * TIMEOUT_SCALE)
    out = r.stdout.decode("utf-8", "replace")
    lines = [l for l in out.splitlines() if l.startswith("RESULT ")]
    if r.returncode != 0 or len(lines) != 1:
        raise AssertionError(f"glm-loadgen exit {r.returncode}:\n{out}")
    return json.loads(lines[0][len("RESULT "):])


@unittest.skipUnless(os.access(LOADGEN_BIN, os.X_OK), "glm-loadgen not built")
class ConversationWorkloadTest(unittest.TestCase):
    def mock(self, *args):
        p = start_mock(*args)
        self.addCleanup(p.close_log)
        self.addCleanup(p.stop)
        return p

    def test_turns_resend_the_conversation_and_hit_the_cache(self):
        # A plain instance prefills through its own cache: usage carries its cached_tokens.
        m = self.mock("--prefix-cache-blocks", "unbounded")
        result = run_loadgen("--target", f"127.0.0.1:{m.port}", "--conversations", 4, "--turns", 3,
                             "-c", 2, "--groups", 2, "--system-bytes", 300, "--turn-bytes", 500,
                             "-t", 5, "--session-header")
        self.assertEqual((result["ok"], result["errors"], result["skipped_turns"]), (12, 0, 0),
                         result)
        s = mock_stats(m.port)
        self.assertEqual(result["prompt_tokens"], s["prompt_tokens"])
        self.assertEqual(result["cached_tokens"], s["cached_tokens"])
        self.assertGreater(s["cached_tokens"], 0)
        self.assertAlmostEqual(result["hit_ratio"], s["cached_tokens"] / s["prompt_tokens"],
                               places=3)

        by_session = {}
        for r in mock_requests(m.port):
            self.assertEqual(r["target"], "/v1/chat/completions")
            body = json.loads(r["body"])
            self.assertEqual(body["stream_options"], {"include_usage": True})
            by_session.setdefault(r["headers"]["x-session-id"], []).append(body["messages"])
        self.assertEqual(sorted(by_session), [f"conv-{k}" for k in range(4)])
        systems = {}
        for session, turns in by_session.items():
            k = int(session.split("-")[1])
            self.assertEqual(len(turns), 3)
            for t, messages in enumerate(turns):
                # system, then user/assistant pairs, then the new user message.
                self.assertEqual([x["role"] for x in messages],
                                 ["system"] + ["user", "assistant"] * t + ["user"])
                self.assertEqual(len(messages[-1]["content"]), 500)
                if t > 0:
                    # The previous turn's messages unchanged, then its answer as streamed.
                    self.assertEqual(messages[:len(turns[t - 1])], turns[t - 1])
                    self.assertEqual(messages[len(turns[t - 1])]["content"],
                                     "".join(f" tok{i}" for i in range(5)))
            systems.setdefault(k % 2, set()).add(turns[0][0]["content"])
        # Conversations of a group share their system prompt; groups differ.
        self.assertEqual([len(v) for v in systems.values()], [1, 1])
        self.assertNotEqual(systems[0], systems[1])
        self.assertEqual(len(next(iter(systems[0]))), 300)

    def test_turns_alternate_between_targets(self):
        a = self.mock("--chars-per-token", "4")
        b = self.mock("--chars-per-token", "4")
        result = run_loadgen("--target", f"127.0.0.1:{a.port}", "--target", f"127.0.0.1:{b.port}",
                             "--conversations", 2, "--turns", 4, "-c", 2, "-t", 2)
        self.assertEqual((result["ok"], result["errors"]), (8, 0), result)
        # Turn t of conversation k goes to target (k + t) % 2; turn t has 2t + 2 messages. So a
        # gets turns 0 and 2 of conversation 0 and turns 1 and 3 of conversation 1; b the rest.
        for port in (a.port, b.port):
            counts = sorted(len(json.loads(r["body"])["messages"]) for r in mock_requests(port))
            self.assertEqual(counts, [2, 4, 6, 8])
        first_turns = [json.loads(r["body"])["messages"] for r in mock_requests(a.port)
                       if len(json.loads(r["body"])["messages"]) == 2]
        self.assertEqual(len(first_turns), 1)

    def test_a_failed_turn_ends_its_conversation(self):
        m = self.mock("--fail-status", "503")
        result = run_loadgen("--target", f"127.0.0.1:{m.port}", "--conversations", 3, "--turns",
                             4, "-c", 1)
        self.assertEqual((result["ok"], result["errors"], result["skipped_turns"]), (0, 3, 9),
                         result)
        self.assertEqual(result["error_kinds"], {"http_503": 3})


if __name__ == "__main__":
    unittest.main()
