"""mock-vllm --layerwise on its own: a decode request whose kv_transfer_params name a metaserver
makes the mock call it back as the Mooncake layerwise connector does, once per engine request
(cmpl-<X-Request-Id>-<i> per prompt, chatcmpl-<X-Request-Id> for a chat), all at once, and decode
only after every call was answered 2xx. Any other outcome (404, 502, no answer, timeout) leaves the
decode waiting for KV that never comes, until its client closes: that is what glm-proxy's
layerwise mode has to handle.

The metaserver here is a tiny Python server (harness.FakeServer). No timing assertions: order is
established with barriers, events and the mocks' own records.

Run by hand: cd tests/e2e && python3 -m unittest -v test_mock_layerwise
"""

import json
import threading
import unittest

from harness import (FakeResponse, FakeServer, closed_port, mock_requests, mock_stats, open_raw,
                     post_json, start_mock, stream, wait_until)

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"
CONNECTOR_KEYS = ["token_ids", "request_id", "do_remote_prefill", "do_remote_decode",
                  "remote_block_ids", "remote_block_size", "remote_engine_id", "remote_host",
                  "remote_port", "remote_tp_size", "remote_pcp_size", "remote_dcp_size",
                  "remote_cached_tokens"]


def ok():
    return FakeResponse(200, "application/json", ['{"status":"ok"}'], chunked=False)


def decode_kv(metaserver_port, path="/v1/metaserver"):
    return {"do_remote_decode": False, "do_remote_prefill": True,
            "metaserver": f"http://127.0.0.1:{metaserver_port}{path}"}


class Metaserver:
    """A metaserver that answers each callback with `answer()` once `release` is set (at once by
    default), recording every callback body and when it came."""

    def __init__(self, answer=ok, released=True):
        self.answer = answer
        self.release = threading.Event()
        if released:
            self.release.set()
        self.arrived = threading.Semaphore(0)
        self.server = FakeServer(self._handle)
        self.port = self.server.port

    def _handle(self, record):
        self.arrived.release()
        if not self.release.wait(30):
            return FakeResponse(500, "text/plain", ["test: never released"], chunked=False)
        return self.answer()

    def callbacks(self):
        return [json.loads(r["body"]) for r in self.server.recorded("POST", "/v1/metaserver")]

    def close(self):
        self.release.set()
        self.server.close()


class LayerwiseMockTest(unittest.TestCase):
    def setUp(self):
        self.mock = start_mock("--layerwise", "--metaserver-timeout-ms", "5000",
                               name="mock-vllm-layerwise")
        self.addCleanup(self.mock.stop)

    def metaserver(self, **kwargs):
        m = Metaserver(**kwargs)
        self.addCleanup(m.close)
        return m

    def stats(self):
        return mock_stats(self.mock.port)

    def test_stream_waits_for_the_callback_answer(self):
        meta = self.metaserver(released=False)
        result = {}

        def client():
            result["answer"] = stream(
                self.mock.port, COMPLETIONS,
                {"model": "m", "prompt": "one two three", "max_tokens": 4, "stream": True,
                 "kv_transfer_params": decode_kv(meta.port)},
                headers={"X-Request-Id": "abc"})

        t = threading.Thread(target=client)
        t.start()
        self.assertTrue(meta.arrived.acquire(timeout=10), "no callback came")
        # Called back, not yet answered: the decoder has sent nothing.
        stats = self.stats()
        self.assertEqual(stats["active_streams"], 0)
        self.assertEqual(stats["metaserver_calls"], 0)  # recorded when answered
        meta.release.set()
        t.join(30)
        self.assertFalse(t.is_alive())
        status, headers, events = result["answer"]
        self.assertEqual(status, 200)
        self.assertEqual(events[-1], "[DONE]")
        texts = [json.loads(e)["choices"][0]["text"] for e in events[:-1]]
        self.assertEqual(texts, [" tok0", " tok1", " tok2", " tok3"])

        [callback] = meta.callbacks()
        self.assertEqual(list(callback), CONNECTOR_KEYS)
        self.assertEqual(callback["request_id"], "cmpl-abc-0")
        self.assertEqual(callback["token_ids"], [])
        self.assertIs(callback["do_remote_prefill"], False)
        self.assertIs(callback["do_remote_decode"], True)
        self.assertEqual(callback["remote_port"], self.mock.port)
        self.assertEqual(callback["remote_host"], "127.0.0.1")
        self.assertEqual(callback["remote_engine_id"], f"mock-{self.mock.port}")
        self.assertEqual(callback["remote_block_size"], [16])
        self.assertEqual(len(callback["remote_block_ids"]), 1)
        self.assertGreaterEqual(len(callback["remote_block_ids"][0]), 1)
        [record] = meta.server.recorded("POST", "/v1/metaserver")
        self.assertEqual(record["headers"]["content-type"], "application/json")

        stats = self.stats()
        self.assertEqual(stats["metaserver_calls"], 1)
        self.assertEqual(stats["metaserver_failed"], 0)
        [call] = stats["metaserver_callbacks"]
        self.assertEqual(call["request_id"], "cmpl-abc-0")
        self.assertEqual(call["url"], f"http://127.0.0.1:{meta.port}/v1/metaserver")
        self.assertEqual(json.loads(call["body"]), callback)
        self.assertEqual(call["status"], 200)
        self.assertEqual(json.loads(call["answer"]), {"status": "ok"})
        self.assertEqual(call["error"], "")
        self.assertEqual(call["attempts"], 1)
        # The decode request was received before the callback was sent, which was answered after.
        [decode] = [r for r in mock_requests(self.mock.port) if r["target"] == COMPLETIONS]
        self.assertLessEqual(decode["received_at"], call["sent_at"])
        self.assertLessEqual(call["sent_at"], call["answered_at"])

    def test_a_list_prompt_calls_back_once_per_prompt_concurrently(self):
        # The metaserver answers none until all three have called, as glm-proxy and the reference
        # proxy do: callbacks made one after another would never be answered.
        barrier = threading.Barrier(3, timeout=20)

        def answer():
            barrier.wait()
            return ok()

        meta = self.metaserver(answer=answer)
        status, _, body = post_json(
            self.mock.port, COMPLETIONS,
            {"prompt": ["a b", "c d", "e f"], "max_tokens": 2,
             "kv_transfer_params": decode_kv(meta.port)},
            headers={"X-Request-Id": "r-3"})
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["choices"][0]["text"], " tok0 tok1")
        ids = sorted(c["request_id"] for c in meta.callbacks())
        self.assertEqual(ids, ["cmpl-r-3-0", "cmpl-r-3-1", "cmpl-r-3-2"])
        blocks = [c["remote_block_ids"][0] for c in meta.callbacks()]
        self.assertEqual(len({b for bs in blocks for b in bs}), sum(len(bs) for bs in blocks),
                         "each prompt gets blocks of its own")
        self.assertEqual(self.stats()["metaserver_calls"], 3)

    def test_token_id_prompts(self):
        meta = self.metaserver()
        for prompt, expected in (([1, 2, 3], ["cmpl-t-0"]),
                                 ([[1, 2], [3]], ["cmpl-t-0", "cmpl-t-1"])):
            with self.subTest(prompt=prompt):
                before = len(meta.callbacks())
                status, _, body = post_json(
                    self.mock.port, COMPLETIONS,
                    {"prompt": prompt, "max_tokens": 1, "kv_transfer_params": decode_kv(meta.port)},
                    headers={"X-Request-Id": "t"})
                self.assertEqual(status, 200, body)
                ids = sorted(c["request_id"] for c in meta.callbacks()[before:])
                self.assertEqual(ids, expected)

    def test_chat_is_one_chatcmpl_callback(self):
        meta = self.metaserver()
        status, _, events = stream(
            self.mock.port, CHAT,
            {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": True,
             "kv_transfer_params": decode_kv(meta.port)},
            headers={"X-Request-Id": "c-1"})
        self.assertEqual(status, 200)
        self.assertEqual(events[-1], "[DONE]")
        self.assertEqual([c["request_id"] for c in meta.callbacks()], ["chatcmpl-c-1"])

    def test_without_x_request_id_the_mock_names_the_request(self):
        meta = self.metaserver()
        status, _, body = post_json(self.mock.port, COMPLETIONS,
                                    {"prompt": "x", "max_tokens": 1,
                                     "kv_transfer_params": decode_kv(meta.port)})
        self.assertEqual(status, 200, body)
        [callback] = meta.callbacks()
        self.assertRegex(callback["request_id"], r"^cmpl-\d+-0$")

    def assert_decode_hangs_until_client_leaves(self, body, check_call):
        """Sends `body` as a stream on a raw socket; once the mock has recorded its callbacks,
        checks nothing came back, closes, and waits for the mock to count the disconnect."""
        sock = open_raw(self.mock.port, "POST", COMPLETIONS, body)
        try:
            stats = wait_until(lambda: (s := self.stats())["metaserver_calls"] >= 1 and s,
                               message="the callback was not recorded", describe=self.stats)
            [call] = stats["metaserver_callbacks"]
            check_call(call)
            self.assertEqual(stats["metaserver_failed"], 1)
            self.assertEqual(stats["active_streams"], 0)
            self.assertEqual(stats["client_disconnects"], 0)
            sock.setblocking(False)
            with self.assertRaises(BlockingIOError, msg="the decoder answered anyway"):
                sock.recv(1)
        finally:
            sock.close()
        wait_until(lambda: self.stats()["client_disconnects"] == 1,
                   message="the mock did not see its client leave", describe=self.stats)

    def test_an_error_answer_leaves_the_decode_waiting(self):
        for status in (502, 404):
            with self.subTest(status=status):
                post_json(self.mock.port, "/mock/reset", b"")
                error = {"detail": "prefill failed"}
                meta = self.metaserver(answer=lambda s=status: FakeResponse(
                    s, "application/json", [json.dumps(error)], chunked=False))

                def check(call, status=status):
                    self.assertEqual(call["status"], status)
                    self.assertEqual(json.loads(call["answer"]), error)
                    self.assertEqual(call["attempts"], 1)

                self.assert_decode_hangs_until_client_leaves(
                    {"prompt": "x", "stream": True, "kv_transfer_params": decode_kv(meta.port)},
                    check)

    def test_an_unreachable_metaserver_is_tried_three_times(self):
        port = closed_port()

        def check(call):
            self.assertEqual(call["status"], 0)
            self.assertEqual(call["attempts"], 3)
            self.assertIn("connect", call["error"])

        self.assert_decode_hangs_until_client_leaves(
            {"prompt": "x", "stream": True, "kv_transfer_params": decode_kv(port)}, check)

    def test_a_silent_metaserver_times_out(self):
        mock = start_mock("--layerwise", "--metaserver-timeout-ms", "200", name="mock-vllm-short")
        self.addCleanup(mock.stop)
        meta = self.metaserver(released=False)
        sock = open_raw(mock.port, "POST", COMPLETIONS,
                        {"prompt": "x", "kv_transfer_params": decode_kv(meta.port)})
        try:
            stats = wait_until(lambda: (s := mock_stats(mock.port))["metaserver_calls"] >= 1 and s,
                               message="the callback did not time out")
            [call] = stats["metaserver_callbacks"]
            self.assertEqual((call["status"], call["error"], call["attempts"]), (0, "timeout", 1))
            sock.setblocking(False)
            with self.assertRaises(BlockingIOError):
                sock.recv(1)
        finally:
            sock.close()
        wait_until(lambda: mock_stats(mock.port)["client_disconnects"] == 1,
                   message="the mock did not see its client leave")

    def test_a_client_that_leaves_during_the_callback(self):
        meta = self.metaserver(released=False)
        sock = open_raw(self.mock.port, "POST", COMPLETIONS,
                        {"prompt": "x", "stream": True, "kv_transfer_params": decode_kv(meta.port)})
        self.assertTrue(meta.arrived.acquire(timeout=10))
        sock.close()
        wait_until(lambda: self.stats()["client_disconnects"] == 1,
                   message="the mock did not see its client leave", describe=self.stats)
        # The connector's call goes on by itself and is still recorded.
        meta.release.set()
        wait_until(lambda: self.stats()["metaserver_calls"] == 1, describe=self.stats)
        self.assertEqual(self.stats()["active_streams"], 0)

    def test_other_requests_are_unchanged(self):
        meta = self.metaserver()
        # A standard decode (no metaserver), a prefill, a plain request: no callback.
        for kv in ({"do_remote_prefill": True, "remote_host": "h"}, {"do_remote_decode": True},
                   None):
            body = {"prompt": "x", "max_tokens": 1}
            if kv is not None:
                body["kv_transfer_params"] = kv
            status, _, answer = post_json(self.mock.port, COMPLETIONS, body)
            self.assertEqual(status, 200, answer)
        # A request vLLM refuses is refused before any block is allocated: no callback either.
        status, _, _ = post_json(self.mock.port, COMPLETIONS,
                                 {"prompt": "x", "mock_fault": "decode_error",
                                  "kv_transfer_params": decode_kv(meta.port)})
        self.assertEqual(status, 400)
        # More prompts than the mock's bound on concurrent calls: 400, no callback.
        status, _, _ = post_json(self.mock.port, COMPLETIONS,
                                 {"prompt": ["p"] * 1025, "kv_transfer_params": decode_kv(meta.port)})
        self.assertEqual(status, 400)
        self.assertEqual(meta.callbacks(), [])
        self.assertEqual(self.stats()["metaserver_calls"], 0)

    def test_reset_forgets_the_callbacks(self):
        meta = self.metaserver()
        post_json(self.mock.port, COMPLETIONS,
                  {"prompt": "x", "max_tokens": 1, "kv_transfer_params": decode_kv(meta.port)})
        self.assertEqual(self.stats()["metaserver_calls"], 1)
        post_json(self.mock.port, "/mock/reset", b"")
        stats = self.stats()
        self.assertEqual((stats["metaserver_calls"], stats["metaserver_failed"],
                          stats["metaserver_callbacks"]), (0, 0, []))


class StandardMockIgnoresMetaserverTest(unittest.TestCase):
    def test_without_layerwise_a_metaserver_is_not_called(self):
        mock = start_mock()
        self.addCleanup(mock.stop)
        meta = Metaserver()
        self.addCleanup(meta.close)
        status, _, body = post_json(mock.port, COMPLETIONS,
                                    {"prompt": "x", "max_tokens": 2,
                                     "kv_transfer_params": decode_kv(meta.port)})
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["choices"][0]["text"], " tok0 tok1")
        self.assertEqual(meta.callbacks(), [])
        stats = mock_stats(mock.port)
        self.assertEqual((stats["metaserver_calls"], stats["metaserver_callbacks"]), (0, []))
        # Every record carries the time it was received.
        [record] = [r for r in mock_requests(mock.port) if r["target"] == COMPLETIONS]
        self.assertIsInstance(record["received_at"], float)


if __name__ == "__main__":
    unittest.main()
