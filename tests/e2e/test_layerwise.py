"""glm-proxy's layerwise PD mode (--pd-mode layerwise, issue #15) against mock-vllm decoders in
their --layerwise mode: the decode request goes first, the decoder calls /v1/metaserver back once
per prompt, the proxy then sends one prefill carrying exactly what the decoder posted, answers
the callbacks, and relays the decoder's answer as in the standard mode. Failures (a prefill that
fails, no callback in time) end the request cleanly and close the decode connection, with every
load gauge back to 0. Bad callbacks are refused and change nothing.

Order is established from the mocks' own records (received_at, sent_at); no timing assertions.

Run by hand: cd tests/e2e && python3 -m unittest -v test_layerwise
"""

import json
import os
import tempfile
import unittest

from faults_common import check_json_error, wait_no_load
from harness import (ClusterTestCase, closed_port, mock_requests, mock_stats, open_raw,
                     post_json, run_proxy, start_proxy_args, stream, wait_until)
from test_metrics import scrape

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"
METASERVER = "/v1/metaserver"
LAYERWISE_DECODER = ("--layerwise", "--metaserver-timeout-ms", "10000")


def completion(stream_, prompt="one two three", max_tokens=4, **extra):
    body = {"model": "m", "prompt": prompt, "max_tokens": max_tokens, "stream": stream_}
    body.update(extra)
    return body


def chat(stream_, max_tokens=3, **extra):
    body = {"model": "m", "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": max_tokens, "stream": stream_}
    body.update(extra)
    return body


def texts_of(events, chat_=False):
    out = []
    for e in events:
        if e == "[DONE]":
            continue
        for c in json.loads(e).get("choices", []):
            out.append(c["delta"].get("content", "") if chat_ else c["text"])
    return "".join(out)


def requests_to(port, target):
    return [r for r in mock_requests(port) if r["target"] == target]


class LayerwiseTest(ClusterTestCase):
    prefillers = 1
    decoders = 1
    decode_args = LAYERWISE_DECODER
    # One prefiller: failures must not eject it, or later requests find no prefiller.
    proxy_args = ("--pd-mode", "layerwise", "--eject-after", "0")

    @property
    def prefill_port(self):
        return self.cluster.prefill_ports[0]

    @property
    def decode_port(self):
        return self.cluster.decode_ports[0]

    def check_flow(self, target, n_prompts=1):
        """The decode went first, with the layerwise params; the prefill went after the last
        callback and carries exactly the posted objects. Returns (decode, prefill) records."""
        [decode] = requests_to(self.decode_port, target)
        [prefill] = requests_to(self.prefill_port, target)
        kv = json.loads(decode["body"])["kv_transfer_params"]
        self.assertEqual(kv, {"do_remote_decode": False, "do_remote_prefill": True,
                              "metaserver": f"http://127.0.0.1:{self.port}{METASERVER}"})
        calls = mock_stats(self.decode_port)["metaserver_callbacks"]
        self.assertEqual(len(calls), n_prompts)
        for call in calls:
            self.assertEqual(call["status"], 200, call)
            self.assertEqual(json.loads(call["answer"]), {"status": "ok"})
            self.assertLessEqual(decode["received_at"], call["sent_at"])
            self.assertLessEqual(call["sent_at"], prefill["received_at"])
        self.assertLess(decode["received_at"], prefill["received_at"])
        backend_id = decode["headers"]["x-request-id"]
        self.assertEqual(prefill["headers"]["x-request-id"], backend_id)
        prefill_body = json.loads(prefill["body"])
        self.assertIs(prefill_body["stream"], False)
        self.assertEqual(prefill_body["max_tokens"], 1)
        self.assertEqual(prefill_body["min_tokens"], 1)
        self.assertNotIn("stream_options", prefill_body)
        posted = prefill_body["kv_transfer_params"]
        if n_prompts == 1:
            # Byte for byte: the posted object is spliced in, not re-serialized.
            self.assertIn('"kv_transfer_params":' + calls[0]["body"], prefill["body"])
            self.assertEqual(posted, json.loads(calls[0]["body"]))
        else:
            batch = posted["batch_kv_transfer_params"]
            ids = [f"{'cmpl'}-{backend_id}-{i}" for i in range(n_prompts)]
            self.assertEqual(list(batch), ids)
            by_id = {c["request_id"]: c for c in calls}
            for i in ids:
                self.assertIn(f'"{i}":' + by_id[i]["body"], prefill["body"])
        return decode, prefill

    def test_completion_stream(self):
        status, headers, events = stream(
            self.port, COMPLETIONS,
            completion(True, stream_options={"include_usage": True}),
            headers={"X-Request-Id": "lw-stream"})
        self.assertEqual(status, 200, events)
        self.assertEqual(headers["x-request-id"], "lw-stream")
        self.assertEqual(events[-1], "[DONE]")
        self.assertEqual(texts_of(events), " tok0 tok1 tok2 tok3")
        # The cached_tokens fix-up: the prefiller's figure (0), not the decoder's (the prompt).
        usage = json.loads(events[-2])["usage"]
        self.assertEqual(usage["prompt_tokens_details"]["cached_tokens"], 0)
        decode, _ = self.check_flow(COMPLETIONS)
        self.assertTrue(decode["headers"]["x-request-id"].startswith("lw-stream-"))
        self.assertEqual(mock_stats(self.decode_port)["metaserver_callbacks"][0]["request_id"],
                         f"cmpl-{decode['headers']['x-request-id']}-0")
        wait_no_load(self.port)

    def test_completion_not_streamed(self):
        status, _, body = post_json(self.port, COMPLETIONS, completion(False))
        self.assertEqual(status, 200, body)
        answer = json.loads(body)
        self.assertEqual(answer["choices"][0]["text"], " tok0 tok1 tok2 tok3")
        self.assertEqual(answer["usage"]["prompt_tokens_details"]["cached_tokens"], 0)
        self.check_flow(COMPLETIONS)
        wait_no_load(self.port)

    def test_chat_stream_and_not(self):
        status, _, events = stream(self.port, CHAT, chat(True))
        self.assertEqual(status, 200, events)
        self.assertEqual(events[-1], "[DONE]")
        self.assertEqual(texts_of(events, chat_=True), " tok0 tok1 tok2")
        decode, _ = self.check_flow(CHAT)
        self.assertEqual(mock_stats(self.decode_port)["metaserver_callbacks"][0]["request_id"],
                         f"chatcmpl-{decode['headers']['x-request-id']}")
        self.cluster.reset_mocks()
        status, _, body = post_json(self.port, CHAT, chat(False, max_completion_tokens=3))
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["choices"][0]["message"]["content"], " tok0 tok1 tok2")
        _, prefill = self.check_flow(CHAT)
        self.assertEqual(json.loads(prefill["body"])["max_completion_tokens"], 1)
        wait_no_load(self.port)

    def test_a_list_prompt_of_three_is_one_batched_prefill(self):
        for streamed in (True, False):
            with self.subTest(stream=streamed):
                self.cluster.reset_mocks()
                body = completion(streamed, prompt=["a b", "c d", "e f"], max_tokens=2)
                if streamed:
                    status, _, events = stream(self.port, COMPLETIONS, body)
                    self.assertEqual(status, 200, events)
                    self.assertEqual(events[-1], "[DONE]")
                else:
                    status, _, raw = post_json(self.port, COMPLETIONS, body)
                    self.assertEqual(status, 200, raw)
                    self.assertEqual(json.loads(raw)["choices"][0]["text"], " tok0 tok1")
                self.check_flow(COMPLETIONS, n_prompts=3)
        wait_no_load(self.port)

    def test_a_preempted_request_is_resumed_in_a_second_layerwise_round(self):
        # The decoder preempts after 3 of 6 tokens; the proxy re-prefills prompt + text so far,
        # again decode first, and the client sees one unbroken stream.
        status, _, events = stream(self.port, COMPLETIONS,
                                   completion(True, prompt="x", max_tokens=6,
                                              mock_fault="recompute"))
        self.assertEqual(status, 200, events)
        self.assertEqual(events[-1], "[DONE]")
        self.assertEqual(texts_of(events), " tok0 tok1 tok2 tok3 tok4 tok5")
        decodes = requests_to(self.decode_port, COMPLETIONS)
        self.assertEqual(len(decodes), 2)
        self.assertNotEqual(decodes[0]["headers"]["x-request-id"],
                            decodes[1]["headers"]["x-request-id"])
        self.assertEqual(len(requests_to(self.prefill_port, COMPLETIONS)), 2)
        self.assertEqual(len(mock_stats(self.decode_port)["metaserver_callbacks"]), 2)
        wait_no_load(self.port)

    def test_a_reused_client_id_gets_a_fresh_backend_id_each_time(self):
        for _ in range(2):
            status, _, body = post_json(self.port, COMPLETIONS, completion(False),
                                        headers={"X-Request-Id": "same"})
            self.assertEqual(status, 200, body)
        ids = [r["headers"]["x-request-id"] for r in requests_to(self.decode_port, COMPLETIONS)]
        self.assertEqual(len(ids), 2)
        self.assertNotEqual(ids[0], ids[1])
        self.assertTrue(all(i.startswith("same-") for i in ids), ids)

    def test_failing_prefill_ends_the_request_and_closes_the_decode(self):
        for streamed in (True, False):
            with self.subTest(stream=streamed):
                self.cluster.reset_mocks()
                status, headers, body = post_json(
                    self.port, COMPLETIONS, completion(streamed, mock_fault="prefill_error"))
                # Before the first byte: the prefiller's own status and error.
                check_json_error(status, headers, body, expected_status=500)
                # The decoder was waiting for KV: the proxy closed its connection.
                wait_until(lambda: mock_stats(self.decode_port)["client_disconnects"] >= 1,
                           message="the decode connection was not closed")
                [call] = mock_stats(self.decode_port)["metaserver_callbacks"]
                self.assertEqual(call["status"], 502, call)
                wait_no_load(self.port)
        # The proxy still serves.
        status, _, body = post_json(self.port, COMPLETIONS, completion(False))
        self.assertEqual(status, 200, body)

    def test_client_leaving_during_the_prefill_closes_both_backends(self):
        sock = open_raw(self.port, "POST", COMPLETIONS,
                        completion(True, mock_fault="prefill_hang"))
        try:
            wait_until(lambda: len(requests_to(self.prefill_port, COMPLETIONS)) == 1,
                       message="the prefill was not sent")
            # While the prefill runs, the same callback again is refused, and changes nothing.
            body = json.loads(requests_to(self.prefill_port, COMPLETIONS)[0]["body"])
            status, headers, answer = post_json(self.port, METASERVER,
                                                 body["kv_transfer_params"])
            check_json_error(status, headers, answer, expected_status=409)
            self.assertEqual(self.cluster.request_num(), 1)
        finally:
            sock.close()
        wait_until(lambda: mock_stats(self.prefill_port)["client_disconnects"] >= 1,
                   message="the prefill connection was not closed")
        wait_until(lambda: mock_stats(self.decode_port)["client_disconnects"] >= 1,
                   message="the decode connection was not closed")
        # The decoder records its callback's answer when it reads it, which may come after the
        # close (seen under TSan with two workers): wait for it rather than read it at once.
        wait_until(lambda: len(mock_stats(self.decode_port)["metaserver_callbacks"]) == 1,
                   message="the decoder's callback was not answered")
        [call] = mock_stats(self.decode_port)["metaserver_callbacks"]
        self.assertEqual(call["status"], 502, call)
        wait_no_load(self.port)
        self.assertEqual(scrape(self.port).value("glm_proxy_metaserver_requests_total",
                                                 code="409"), 1)

    def test_bad_callbacks_are_refused_and_change_nothing(self):
        cases = [
            (b"not json", 400),
            (b'{"remote_port": 1}', 400),
            (b'{"request_id": 7}', 400),
            (b'{"request_id": "cmpl-nobody-0"}', 404),
        ]
        for body, code in cases:
            with self.subTest(body=body):
                status, headers, answer = post_json(self.port, METASERVER, body)
                check_json_error(status, headers, answer, expected_status=code)
        # A callback for a request that has finished: unknown now.
        status, _, body = post_json(self.port, COMPLETIONS, completion(False))
        self.assertEqual(status, 200, body)
        [call] = mock_stats(self.decode_port)["metaserver_callbacks"]
        status, headers, answer = post_json(self.port, METASERVER, call["body"].encode())
        check_json_error(status, headers, answer, expected_status=404)
        m = scrape(self.port)
        self.assertEqual(m.value("glm_proxy_metaserver_requests_total", code="400"), 3)
        self.assertEqual(m.value("glm_proxy_metaserver_requests_total", code="404"), 2)
        self.assertEqual(m.value("glm_proxy_metaserver_requests_total", code="200"), 1)
        self.assertEqual(m.value("glm_proxy_metaserver_wait_seconds_count"), 1)
        wait_no_load(self.port)
        status, _, body = post_json(self.port, COMPLETIONS, completion(False))
        self.assertEqual(status, 200, body)


class LayerwiseFailureTest(ClusterTestCase):
    auto_cluster = False

    def test_prefiller_down(self):
        c = self.start_cluster(prefillers=1, decoders=1, decode_args=LAYERWISE_DECODER,
                               proxy_args=("--pd-mode", "layerwise", "--retry-delay", "0"))
        c.prefillers[0].stop()
        status, headers, body = post_json(c.port, COMPLETIONS, completion(True))
        check_json_error(status, headers, body, expected_status=502)
        wait_until(lambda: mock_stats(c.decode_ports[0])["client_disconnects"] >= 1,
                   message="the decode connection was not closed")
        wait_no_load(c.port)

    def test_no_callback_within_the_timeout(self):
        # The decoders are told to call a port nothing listens on: no callback ever comes.
        url = f"http://127.0.0.1:{closed_port()}{METASERVER}"
        c = self.start_cluster(prefillers=1, decoders=1, decode_args=LAYERWISE_DECODER,
                               proxy_args=("--pd-mode", "layerwise", "--metaserver-url", url,
                                           "--metaserver-timeout", "0.5"))
        for streamed in (True, False):
            with self.subTest(stream=streamed):
                status, headers, body = post_json(c.port, COMPLETIONS, completion(streamed))
                message = check_json_error(status, headers, body, expected_status=504)
                self.assertIn("did not call the metaserver back", message)
        wait_until(lambda: mock_stats(c.decode_ports[0])["client_disconnects"] >= 2,
                   message="the decode connections were not closed")
        self.assertEqual(requests_to(c.prefill_ports[0], COMPLETIONS), [])
        wait_no_load(c.port)

    def test_client_leaving_while_the_decoder_has_not_called_back(self):
        url = f"http://127.0.0.1:{closed_port()}{METASERVER}"
        c = self.start_cluster(prefillers=1, decoders=1, decode_args=LAYERWISE_DECODER,
                               proxy_args=("--pd-mode", "layerwise", "--metaserver-url", url))
        sock = open_raw(c.port, "POST", COMPLETIONS, completion(True))
        try:
            wait_until(lambda: mock_stats(c.decode_ports[0])["metaserver_failed"] >= 1,
                       message="the decoder did not try to call back")
            self.assertEqual(c.request_num(), 1)
        finally:
            sock.close()
        wait_until(lambda: mock_stats(c.decode_ports[0])["client_disconnects"] >= 1,
                   message="the decode connection was not closed")
        self.assertEqual(requests_to(c.prefill_ports[0], COMPLETIONS), [])
        wait_no_load(c.port)
        self.assertEqual(scrape(c.port).value("glm_proxy_client_disconnects_total"), 1)

    def test_decoder_refusal_reaches_the_client(self):
        c = self.start_cluster(prefillers=1, decoders=1, decode_args=LAYERWISE_DECODER,
                               proxy_args=("--pd-mode", "layerwise"))
        status, headers, body = post_json(c.port, COMPLETIONS,
                                          completion(True, mock_fault="decode_error"))
        check_json_error(status, headers, body, expected_status=400)
        self.assertEqual(requests_to(c.prefill_ports[0], COMPLETIONS), [])
        wait_no_load(c.port)

    def test_a_decoder_down_is_retried_on_another(self):
        # Ties go to the instance picked least recently: of two requests, one tries the dead one.
        c = self.start_cluster(prefillers=1, decoders=1, decode_args=LAYERWISE_DECODER,
                               proxy_args=("--pd-mode", "layerwise", "--decode",
                                           f"127.0.0.1:{closed_port()}", "--retry-delay", "0"))
        for streamed in (True, False):
            with self.subTest(stream=streamed):
                status, _, body = post_json(c.port, COMPLETIONS, completion(streamed))
                self.assertEqual(status, 200, body)
        self.assertEqual(len(requests_to(c.decode_ports[0], COMPLETIONS)), 2)
        self.assertEqual(scrape(c.port).value("glm_proxy_retries_total", role="decode"), 1)
        wait_no_load(c.port)

    def test_a_decoder_failing_after_its_callback_is_not_retried(self):
        # Once a decoder has called back, the prefiller pushes the KV cache to it: another
        # decoder cannot take the request over, so its failure is the answer.
        c = self.start_cluster(prefillers=1, decoders=2, decode_args=LAYERWISE_DECODER,
                               proxy_args=("--pd-mode", "layerwise", "--retry-delay", "0",
                                           "--eject-after", "0"))
        status, headers, body = post_json(c.port, COMPLETIONS,
                                          completion(False, mock_fault="decode_cut"))
        check_json_error(status, headers, body, expected_status=502)
        decodes = sum(len(requests_to(p, COMPLETIONS)) for p in c.decode_ports)
        self.assertEqual(decodes, 1)
        self.assertEqual(len(requests_to(c.prefill_ports[0], COMPLETIONS)), 1)
        wait_no_load(c.port)

    def test_metaserver_outside_layerwise_mode_is_not_found(self):
        c = self.start_cluster(prefillers=1, decoders=1)
        status, headers, body = post_json(c.port, METASERVER, {"request_id": "cmpl-x-0"})
        check_json_error(status, headers, body, expected_status=404)


class LayerwiseFlagsTest(unittest.TestCase):
    def test_wildcard_host_needs_a_metaserver_url(self):
        for host in ("0.0.0.0", "::", "[::]"):
            with self.subTest(host=host):
                code, out = run_proxy(["--host", host, "--port", "0", "--pd-mode", "layerwise"])
                self.assertEqual(code, 2, out)
                self.assertIn("wildcard", out)
                self.assertIn("--metaserver-url", out)

    def test_toml_and_the_configuration_line(self):
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write('pd-mode = "layerwise"\n'
                    'metaserver-url = "http://10.0.0.9:8000/v1/metaserver"\n'
                    'metaserver-timeout = 7.5\n')
        self.addCleanup(os.unlink, f.name)
        p = start_proxy_args(["--config", f.name, "--prefill", "127.0.0.1:1",
                              "--decode", "127.0.0.1:2"])
        try:
            log = p.read_log()
        finally:
            p.stop()
            p.close_log()
        self.assertIn("pd_mode=layerwise", log)
        self.assertIn("metaserver_url=http://10.0.0.9:8000/v1/metaserver", log)
        self.assertIn("metaserver_timeout=7.5", log)
        self.assertIn("decoders call the metaserver back at http://10.0.0.9:8000/v1/metaserver", log)

    def test_metaserver_timeout_defaults_to_the_prefill_timeout(self):
        p = start_proxy_args(["--pd-mode", "layerwise", "--prefill-timeout", "42",
                              "--prefill", "127.0.0.1:1", "--decode", "127.0.0.1:2"])
        try:
            log = p.read_log()
        finally:
            p.stop()
            p.close_log()
        self.assertIn("metaserver_timeout=42", log)
        self.assertRegex(log, r"decoders call the metaserver back at http://127\.0\.0\.1:\d+/v1/metaserver")

    def test_bad_values(self):
        for args in (["--pd-mode", "sideways"], ["--metaserver-url", "ftp://x/y"],
                     ["--metaserver-timeout", "-1"]):
            with self.subTest(args=args):
                code, out = run_proxy(args + ["--port", "0"])
                self.assertEqual(code, 2, out)


if __name__ == "__main__":
    unittest.main()
