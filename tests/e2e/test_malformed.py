"""Oversized and malformed input, table-driven: bad JSON, wrong member types, duplicate keys, huge
numbers, invalid UTF-8, nesting bombs, chunked and Content-Length framing, oversized headers and
bodies, bad methods, targets and versions, pipelining, raw non-HTTP bytes and slowloris clients.

Each case is raw bytes written to a socket and what must come back: a JSON error with the right
status (from the proxy itself, or a backend's 400 passed through), or the correct answer when the
input is in fact valid, or (for a client that stalls) the connection closed. After every case the
proxy must still run and hold no load; where the proxy itself must refuse, no backend may have
seen the request.

The mock backends validate member types as vLLM's pydantic models do (bench/mock_vllm/README.md),
so a wrong type that the proxy does not interpret comes back as the backend's 400.

Run by hand: cd tests/e2e && python3 -m unittest -v test_malformed
"""

import concurrent.futures
import json
import random
import select
import socket
import time
import unittest

from faults_common import (CHAT, COMPLETIONS, RawConnection, check_json_error, check_stream,
                           http_request, tokens_text, wait_no_load)
from harness import ClusterTestCase, mock_requests, mock_reset

MAX_BODY = 16384
HEADER_TIMEOUT = 2


def J(obj):
    return json.dumps(obj).encode()


def P(body, path=COMPLETIONS, **kw):
    """A POST of raw body bytes with a correct Content-Length."""
    return http_request("POST", path, body, **kw)


def chunked(pieces, path=COMPLETIONS, extra=b""):
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n").encode() + extra + b"\r\n"
    return head + b"".join(pieces)


def chunk(data):
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def with_headers(head_lines, body=b""):
    """A request from literal lines (bytes, CRLF added) and a body."""
    return b"\r\n".join(head_lines) + b"\r\n\r\n" + body


VALID = J({"prompt": "x", "max_tokens": 2})
VALID_CHAT = J({"messages": [{"role": "user", "content": "x"}], "max_tokens": 2})


# Expectations -----------------------------------------------------------------------------------

class Err:
    """A JSON error with `status`. by_proxy: the proxy answers it itself (no backend is reached)."""

    def __init__(self, status, by_proxy=True, allow=None):
        self.status = status
        self.by_proxy = by_proxy
        self.allow = allow


class Ans:
    """The correct answer: n tokens, as JSON or as an SSE stream."""

    def __init__(self, n, stream=False, chat=False):
        self.n = n
        self.stream = stream
        self.chat = chat


class Closed:
    """No answer is owed (the client stalls or never finishes its request): the proxy must close
    the connection by itself, within its --header-timeout (polled with a generous deadline)."""


class HeadOk:
    """A 200 answer to HEAD: the GET's status and headers, no body."""


class Seq:
    """Several responses on one connection, in order (pipelining)."""

    def __init__(self, *items):
        self.items = items


def cases():
    out = []

    def add(name, data, expect, **opts):
        out.append((name, data, expect, opts))

    e400 = Err(400)
    be400 = Err(400, by_proxy=False)  # a backend's 400, passed through

    # -- not JSON, or not a JSON object ------------------------------------------------------
    for name, body in [
            ("empty body", b""), ("whitespace body", b"  \n\t "), ("text", b"not json"),
            ("open brace", b"{"), ("unterminated object", b'{"prompt":"x"'),
            ("dangling comma", b'{"prompt":"x",'), ("trailing comma", b'{"prompt":"x",}'),
            ("missing comma", b'{"prompt":"x" "max_tokens":1}'),
            ("single quotes", b"{'prompt':'x'}"), ("bare key", b'{prompt:"x"}'),
            ("array", b"[]"), ("array of object", b'[{"prompt":"x"}]'), ("string", b'"prompt"'),
            ("number", b"42"), ("null", b"null"), ("true", b"true"),
            ("trailing garbage", b'{"prompt":"x"} x'),
            ("two objects", b'{"prompt":"x"}{"prompt":"y"}'),
            ("object then comma", b'{"prompt":"x"},'), ("object then NUL", b'{"prompt":"x"}\x00'),
            ("NaN", b'{"prompt":NaN}'), ("Infinity", b'{"prompt":"x","max_tokens":Infinity}'),
            ("-Infinity", b'{"prompt":"x","max_tokens":-Infinity}'),
            ("leading zero", b'{"prompt":"x","max_tokens":01}'),
            ("bare dot", b'{"prompt":"x","max_tokens":1.}'),
            ("plus sign", b'{"prompt":"x","max_tokens":+1}'),
            ("hex number", b'{"prompt":"x","max_tokens":0x10}'),
            ("leading dot", b'{"prompt":"x","max_tokens":.5}'),
            ("empty exponent", b'{"prompt":"x","max_tokens":1e}'),
            ("tru", b'{"prompt":"x","a":tru}'), ("nul", b'{"prompt":"x","a":nul}'),
            ("Python True", b'{"prompt":"x","a":True}'),
            ("block comment", b'{"prompt":"x" /* c */}'), ("line comment", b'{"prompt":"x"} // c'),
            ("bad escape", b'{"prompt":"\\x41"}'), ("short unicode escape", b'{"prompt":"\\u12"}'),
            ("non-hex unicode escape", b'{"prompt":"\\u12zz"}'),
            ("bad escape in ignored member", b'{"prompt":"x","user":"\\q"}'),
            ("bad escape in key", b'{"prompt":"x","\\q":1}'),
            ("raw newline in string", b'{"prompt":"a\nb"}'),
            ("raw tab in string", b'{"prompt":"a\tb"}'),
            ("control byte in string", b'{"prompt":"a\x01b"}'),
            ("unterminated string", b'{"prompt":"x'),
            ("invalid UTF-8 byte", b'{"prompt":"\xff"}'),
            ("truncated UTF-8", b'{"prompt":"\xc3"}'),
            ("overlong UTF-8", b'{"prompt":"\xc0\xaf"}'),
            ("UTF-8 surrogate", b'{"prompt":"\xed\xa0\x80"}'),
            ("UTF-8 beyond U+10FFFF", b'{"prompt":"\xf4\x90\x80\x80"}'),
            ("invalid UTF-8 in key", b'{"\xff":1,"prompt":"x"}'),
            ("invalid UTF-8 outside strings", b'{"prompt":"x"\xa0}'),
            ("neither prompt nor messages", b"{}"), ("model only", b'{"model":"m"}'),
            ("prompt key differs in case", b'{"Prompt":"x"}'),
    ]:
        add(f"json: {name}", P(body), e400)

    # -- nesting bombs -------------------------------------------------------------------------
    add("depth: 5000 arrays", P(b'{"prompt":"x","a":' + b"[" * 5000 + b"]" * 5000 + b"}"), e400)
    add("depth: 2000 objects", P(b'{"a":' * 2000 + b'"x"' + b"}" * 2000), e400)
    add("depth: 6000 unclosed arrays", P(b'{"prompt":' + b"[" * 6000), e400)
    add("depth: 200 levels in an extra member is fine",
        P(b'{"prompt":"x","max_tokens":2,"a":' + b"[" * 200 + b"]" * 200 + b"}"), Ans(2))
    add("depth: 100000 levels is over the body limit",
        P(b'{"prompt":"x","a":' + b"[" * 100000 + b"]" * 100000 + b"}"), Err(413))

    # -- duplicate keys: the last one wins, for the proxy and for the backend alike -----------
    add("dup: prompt", P(b'{"prompt":"x","prompt":"y","max_tokens":2}'), Ans(2))
    add("dup: max_tokens", P(b'{"prompt":"x","max_tokens":5,"max_tokens":2}'), Ans(2))
    add("dup: stream true then false",
        P(b'{"prompt":"x","stream":true,"stream":false,"max_tokens":2}'), Ans(2))
    add("dup: stream false then true",
        P(b'{"prompt":"x","stream":false,"stream":true,"max_tokens":2}'), Ans(2, stream=True))
    add("dup: bad stream then true",
        P(b'{"prompt":"x","stream":"yes","stream":true,"max_tokens":3}'), Ans(3, stream=True))
    add("dup: kv_transfer_params",
        P(b'{"prompt":"x","kv_transfer_params":1,"kv_transfer_params":{"do_remote_prefill":true},'
          b'"max_tokens":2}'), Ans(2))
    add("escaped key: str\\u0065am", P(b'{"prompt":"x","str\\u0065am":true,"max_tokens":2}'),
        Ans(2, stream=True))
    add("unicode escapes in prompt", P(b'{"prompt":"\\u00e9\\ud83d\\ude00","max_tokens":2}'),
        Ans(2))
    add("UTF-8 prompt", P('{"prompt":"héllo 🙂 世界","max_tokens":2}'.encode()), Ans(2))

    # -- numbers --------------------------------------------------------------------------------
    for name, value in [("1e400", b"1e400"), ("23 digits", b"99999999999999999999999"),
                        ("-1", b"-1"), ("1000001", b"1000001"), ("1.5", b"1.5"),
                        ("string two", b'"two"'), ("list", b"[2]"), ("object", b'{"n":2}')]:
        add(f"max_tokens {name}", P(b'{"prompt":"x","max_tokens":' + value + b"}"), be400)
    for name, value in [("2.0", b"2.0"), ("string 2", b'"2"'), ("2e0", b"2e0")]:
        add(f"max_tokens {name} (lax int)", P(b'{"prompt":"x","max_tokens":' + value + b"}"),
            Ans(2))
    add("max_tokens null", P(b'{"prompt":"x","max_tokens":null}'), Ans(16))
    add("chat max_completion_tokens 1e999",
        P(b'{"messages":[{"role":"user","content":"x"}],"max_completion_tokens":1e999}', CHAT),
        be400)

    # -- wrong types for the members vLLM validates ----------------------------------------------
    for value in [b"42", b"[]", b"{}", b"true"]:
        add(f"model {value.decode()}", P(b'{"prompt":"x","max_tokens":2,"model":' + value + b"}"),
            be400)
    add("model null", P(b'{"prompt":"x","max_tokens":2,"model":null}'), Ans(2))
    for value in [b"42", b"null", b"true", b"{}", b"[]", b'[1,"a"]', b"[1.5]", b"[[]]", b"[-1]",
                  b"[[1],\"a\"]"]:
        add(f"prompt {value.decode()}", P(b'{"max_tokens":2,"prompt":' + value + b"}"), be400)
    for value, n in [(b"[[1,2],[3]]", 2), (b"[1,2,3]", 2), (b'["a","b"]', 2)]:
        add(f"prompt {value.decode()} (valid)", P(b'{"max_tokens":2,"prompt":' + value + b"}"),
            Ans(n))
    for value in [b'"hi"', b"42", b"{}", b"null", b"[]", b"[1]", b'["hi"]', b'[{"content":"x"}]',
                  b'[{"role":1,"content":"x"}]', b'[{"role":"user","content":5}]']:
        add(f"chat messages {value.decode()}",
            P(b'{"max_tokens":2,"messages":' + value + b"}", CHAT), be400)
    add("chat with prompt only", P(b'{"prompt":"x","max_tokens":2}', CHAT), be400)
    add("completions with messages only", P(VALID_CHAT, COMPLETIONS), be400)
    add("chat valid", P(VALID_CHAT, CHAT), Ans(2, chat=True))
    add("chat content parts",
        P(J({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
             "max_tokens": 2, "stream": True}), CHAT), Ans(2, stream=True, chat=True))

    # -- stream and stream_options: the proxy reads these itself, so it must agree with the
    # backend about them; a value vLLM would coerce ("yes", 1) is refused instead.
    for value in [b'"yes"', b'"true"', b"1", b"0", b"2", b"[]", b"{}", b'"maybe"']:
        add(f"stream {value.decode()}", P(b'{"prompt":"x","max_tokens":2,"stream":' + value + b"}"),
            e400)
    add("stream null", P(b'{"prompt":"x","max_tokens":2,"stream":null}'), Ans(2))
    for value in [b'"x"', b"1", b"[]"]:
        add(f"stream_options {value.decode()}",
            P(b'{"prompt":"x","max_tokens":2,"stream":true,"stream_options":' + value + b"}"),
            e400)
    add("include_usage yes",
        P(b'{"prompt":"x","max_tokens":2,"stream":true,"stream_options":{"include_usage":"yes"}}'),
        e400)
    add("include_usage null",
        P(b'{"prompt":"x","max_tokens":2,"stream":true,"stream_options":{"include_usage":null}}'),
        Ans(2, stream=True))
    add("stream_options null",
        P(b'{"prompt":"x","max_tokens":2,"stream":true,"stream_options":null}'),
        Ans(2, stream=True))

    # -- content types: like the reference (FastAPI's request.json()), the body is JSON whatever
    # the Content-Type says.
    for ctype in ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=x",
                  None]:
        add(f"content-type {ctype}", http_request("POST", COMPLETIONS, VALID, content_type=ctype),
            Ans(2))

    # -- chunked request bodies -------------------------------------------------------------------
    add("chunked: three chunks", chunked([chunk(VALID[:5]), chunk(VALID[5:9]), chunk(VALID[9:]),
                                          b"0\r\n\r\n"]), Ans(2))
    add("chunked: extensions", chunked([f"{len(VALID):x};name=value\r\n".encode() + VALID +
                                        b"\r\n", b"0\r\n\r\n"]), Ans(2))
    add("chunked: trailer", chunked([chunk(VALID), b"0\r\nX-Trailer: 1\r\n\r\n"]), Ans(2))
    add("chunked: bad size", chunked([b"zz\r\n" + VALID + b"\r\n0\r\n\r\n"]), e400)
    add("chunked: size overflow", chunked([b"fffffffffffffffffffff\r\n" + VALID]), e400)
    add("chunked: data longer than size", chunked([b"3\r\n" + VALID + b"\r\n0\r\n\r\n"]), e400)
    add("chunked: over the body limit",
        chunked([chunk(b" " * 8000)] * 3 + [chunk(VALID), b"0\r\n\r\n"]), Err(413))
    add("chunked: bad JSON inside", chunked([chunk(b'{"prompt":'), b"0\r\n\r\n"]), e400)
    add("chunked and Content-Length",
        chunked([chunk(VALID), b"0\r\n\r\n"], extra=b"Content-Length: 5\r\n"), e400)
    add("transfer-encoding gzip, chunked",
        with_headers([b"POST /v1/completions HTTP/1.1", b"Host: x",
                      b"Transfer-Encoding: gzip, chunked"], chunk(VALID) + b"0\r\n\r\n"), Err(501))
    # RFC 9112 6.1: the length is unknowable, whatever Content-Length says (request smuggling).
    add("transfer-encoding unknown, with Content-Length",
        with_headers([b"POST /v1/completions HTTP/1.1", b"Host: x", b"Transfer-Encoding: xchunked",
                      b"Content-Length: %d" % len(VALID)], VALID), e400)

    # -- Content-Length ----------------------------------------------------------------------------
    def cl(value, body=VALID):
        return with_headers([b"POST /v1/completions HTTP/1.1", b"Host: x",
                             b"Content-Type: application/json", b"Content-Length: " + value], body)

    add("content-length: two different",
        with_headers([b"POST /v1/completions HTTP/1.1", b"Host: x",
                      b"Content-Length: %d" % len(VALID), b"Content-Length: 5"], VALID), e400)
    add("content-length: -1", cl(b"-1"), e400)
    add("content-length: abc", cl(b"abc"), e400)
    add("content-length: 1e3", cl(b"1e3"), e400)
    add("content-length: 30 digits", cl(b"9" * 30), e400)
    add("content-length: over the body limit, body never sent", cl(b"10000000", b""), Err(413))
    add("content-length: shorter than the body", cl(b"10"), Err(400))
    add("content-length: longer than the body, client stalls", cl(b"%d" % (len(VALID) + 50)),
        Closed())
    add("POST without length or chunking", with_headers(
        [b"POST /v1/completions HTTP/1.1", b"Host: x", b"Content-Type: application/json"]), e400)

    # -- oversized -------------------------------------------------------------------------------
    big_prompt = b"w " * ((MAX_BODY - 40) // 2)
    at_limit = b'{"max_tokens":2,"prompt":"' + big_prompt
    at_limit += b" " * (MAX_BODY - len(at_limit) - 2) + b'"}'
    assert len(at_limit) == MAX_BODY
    add("body exactly at the limit", P(at_limit), Ans(2))
    over = at_limit[:-2] + b' "}'
    add("body one byte over the limit", P(over), Err(413))
    add("header line of 70 KiB", http_request("POST", COMPLETIONS, VALID,
                                              headers={"X-Big": "a" * (70 << 10)}), Err(431))
    add("2000 headers", http_request("POST", COMPLETIONS, VALID,
                                     headers=[(f"X-H{i}", "v" * 30) for i in range(2000)]),
        Err(431))
    add("request target of 70 KiB", http_request("GET", "/" + "a" * (70 << 10)), Err(431))
    add("headers of 40 KiB are fine",
        http_request("POST", COMPLETIONS, VALID, headers={"X-Big": "a" * (40 << 10)}), Ans(2))

    # -- methods -----------------------------------------------------------------------------------
    for method in ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "FOO", "post"]:
        add(f"method {method} /v1/completions", http_request(method, COMPLETIONS, VALID),
            Err(405, allow="POST"))
    add("method GET /v1/chat/completions", http_request("GET", CHAT), Err(405, allow="POST"))
    add("method POST /healthcheck", http_request("POST", "/healthcheck", b"{}"),
        Err(405, allow="GET, HEAD"))
    add("method POST /metrics", http_request("POST", "/metrics", b""),
        Err(405, allow="GET, HEAD"))
    add("method GET /instances/add", http_request("GET", "/instances/add"), Err(405, allow="POST"))
    add("method DELETE /v1/models", http_request("DELETE", "/v1/models"),
        Err(405, allow="GET, HEAD"))
    # HEAD is served wherever GET is, without a body: the healthcheck pipelined after it must
    # parse cleanly.
    for path in ("/healthcheck", "/metrics"):
        add(f"method HEAD {path}, then GET /healthcheck", http_request(
            "HEAD", path, content_length=False, content_type=None) + http_request(
            "GET", "/healthcheck", content_length=False, content_type=None),
            Seq(HeadOk(), Ans(None)), head=True)
    add("method HEAD /v1/completions, then GET /healthcheck", http_request(
        "HEAD", COMPLETIONS, content_length=False, content_type=None) + http_request(
        "GET", "/healthcheck", content_length=False, content_type=None),
        Seq(Err(405, allow="POST"), Ans(None)), head=True)
    add("method with a bad character", http_request("G@T", "/healthcheck"), e400)

    # -- targets -------------------------------------------------------------------------------------
    add("target with a query", P(VALID, COMPLETIONS + "?x=1&y"), Ans(2))
    add("absolute-form target", P(VALID, "http://127.0.0.1" + COMPLETIONS), Ans(2))
    add("absolute-form target, other host and query",
        P(VALID, "http://backend.example:8000" + COMPLETIONS + "?a=b"), Ans(2))
    for target in [COMPLETIONS + "/", "/" + COMPLETIONS, "/V1/COMPLETIONS", "/v1/%63ompletions",
                   "/v1/completions.json", "/../v1/completions", "*", "v1/completions",
                   "/" + "a" * 8000, "/v1/completions%00", "/\xe9"]:
        add(f"target {target[:40]!r}", P(VALID, target), Err(404))
    add("target with a space",
        with_headers([b"POST /v1/comp letions HTTP/1.1", b"Host: x",
                      b"Content-Length: %d" % len(VALID)], VALID), e400)
    add("target with DEL", with_headers([b"GET /health\x7fcheck HTTP/1.1", b"Host: x"]), e400)
    add("empty target", with_headers([b"GET  HTTP/1.1", b"Host: x"]), e400)

    # -- versions --------------------------------------------------------------------------------------
    add("HTTP/1.0 non-stream", P(VALID, version="HTTP/1.0"), Ans(2), http10=True)
    add("HTTP/1.0 stream", P(J({"prompt": "x", "max_tokens": 3, "stream": True}),
                             version="HTTP/1.0"), Ans(3, stream=True), http10=True)
    add("HTTP/1.0 stream with keep-alive asked",
        P(J({"prompt": "x", "max_tokens": 3, "stream": True}), version="HTTP/1.0",
          headers={"Connection": "keep-alive"}), Ans(3, stream=True), http10=True)
    add("HTTP/1.0 GET /healthcheck", with_headers([b"GET /healthcheck HTTP/1.0"]),
        Ans(None), http10=True)
    add("lowercase version", with_headers([b"GET /healthcheck http/1.1", b"Host: x"]), e400)
    add("version HTTP/1.x", with_headers([b"GET /healthcheck HTTP/1.x", b"Host: x"]), e400)
    add("no version", with_headers([b"GET /healthcheck", b"Host: x"]), e400)
    add("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", e400)
    add("HTTP/1.1 request upgrading to h2c", http_request("GET", "/healthcheck", headers=[
        ("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAAQAAP__")],
        content_length=False, content_type=None), Ans(None))

    # -- header syntax -----------------------------------------------------------------------------------
    base = [b"POST /v1/completions HTTP/1.1", b"Host: x", b"Content-Length: %d" % len(VALID)]
    add("header without colon", with_headers(base + [b"NoColonHere"], VALID), e400)
    add("space before colon", with_headers(base + [b"X-A : b"], VALID), e400)
    # RFC 9112 5.2 allows either a 400 or replacing the fold with spaces; Beast does the latter.
    add("obsolete line folding", with_headers(base + [b"X-A: b", b" folded"], VALID), Ans(2))
    add("NUL in a header value", with_headers(base + [b"X-A: b\x00c"], VALID), e400)
    add("empty header name", with_headers(base + [b": value"], VALID), e400)
    add("Latin-1 header value", with_headers(base + [b"X-A: caf\xe9"], VALID), Ans(2))
    add("Expect: 100-continue", with_headers(base + [b"Expect: 100-continue"], VALID), Ans(2))

    # -- pipelining -----------------------------------------------------------------------------------
    hc = http_request("GET", "/healthcheck", content_length=False, content_type=None)
    add("pipelined: three healthchecks", hc * 3, Seq(Ans(None), Ans(None), Ans(None)))
    add("pipelined: completion then healthcheck", P(VALID) + hc, Seq(Ans(2), Ans(None)))
    add("pipelined: stream then completion",
        P(J({"prompt": "x", "max_tokens": 3, "stream": True})) + P(VALID),
        Seq(Ans(3, stream=True), Ans(2)))
    add("pipelined: chat then bad JSON then completion",
        P(VALID_CHAT, CHAT) + P(b"{bad") + P(VALID), Seq(Ans(2, chat=True), e400, Ans(2)))
    add("pipelined: good request then garbage", P(VALID) + b"\x16\x03\x01garbage\r\n\r\n",
        Seq(Ans(2), e400))

    # -- bytes that are not HTTP ----------------------------------------------------------------------
    add("TLS ClientHello", bytes.fromhex("16030100a5010000a10303") + bytes(range(32)), e400)
    add("SSH banner", b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", e400)
    add("random bytes", bytes(random.Random(7).randrange(256) for _ in range(4096)), e400)
    add("NUL bytes", b"\x00" * 64 + b"\r\n\r\n", e400)
    add("method only", b"GET\r\n\r\n", e400)
    add("a response instead of a request", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", e400)
    add("bare LF line ends", b"GET /healthcheck HTTP/1.1\nHost: x\n\n", e400)

    # -- clients that stall (slowloris) -----------------------------------------------------------------
    add("slowloris: half a request line", b"POST /v1/compl", Closed())
    add("slowloris: headers never end", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n", Closed())
    add("slowloris: nothing at all", b"", Closed())
    add("slowloris: header bytes trickle in", b"", Closed(), trickle=True)
    return out


def _peer_closed(sock):
    """True when the peer has closed (or reset) the connection; reads nothing."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class MalformedInputTests(ClusterTestCase):
    prefillers = 1
    decoders = 1
    proxy_args = ("--max-body-bytes", str(MAX_BODY), "--header-timeout", str(HEADER_TIMEOUT),
                  "--max-retries", "1")

    def test_table(self):
        table = cases()
        self.assertGreaterEqual(len(table), 100)
        # The stalled clients each wait out --header-timeout: they run at the same time, beside
        # the other cases, and their outcomes are reported after them.
        stalled = [case for case in table if isinstance(case[2], Closed)]
        with concurrent.futures.ThreadPoolExecutor(len(stalled)) as pool:
            waits = [pool.submit(self.run_case, data, expect, opts, True)
                     for _, data, expect, opts in stalled]
            for name, data, expect, opts in table:
                if isinstance(expect, Closed):
                    continue
                with self.subTest(name):
                    self.run_case(data, expect, opts)
            for (name, _, _, _), wait in zip(stalled, waits):
                with self.subTest(name):
                    wait.result()
        self.assertTrue(self.cluster.proxy.running(), "the proxy died")
        wait_no_load(self.port)

    def run_case(self, data, expect, opts, concurrent_case=False):
        # A case run beside others neither resets the mocks nor checks what reached them.
        for m in self.cluster.mocks if not concurrent_case else ():
            mock_reset(m.port)
        with RawConnection(self.port, timeout=15) as conn:
            if opts.get("trickle"):
                self.trickle(conn)
            else:
                conn.send(data)
            items = expect.items if isinstance(expect, Seq) else (expect,)
            for index, item in enumerate(items):
                if isinstance(item, Closed):
                    res = conn.read_response(timeout=HEADER_TIMEOUT + 15)
                    self.assertIsNone(res, "a stalled client got an answer instead of a close")
                    continue
                head = opts.get("head", False) and index == 0
                res = conn.read_response(head_request=head)
                self.assertIsNotNone(res, "connection closed without an answer")
                self.check(res, item, dict(opts, head=head))
        self.assertTrue(self.cluster.proxy.running(), "the proxy died")
        by_proxy = [i for i in items if isinstance(i, (Err, Closed)) and
                    getattr(i, "by_proxy", True)]
        if len(by_proxy) == len(items) and not concurrent_case:
            for m in self.cluster.mocks:
                self.assertEqual(mock_requests(m.port), [], f"{m.name} was reached")
        wait_no_load(self.port)

    def check(self, res, expect, opts):
        what = f"{res.status} {res.headers!r} {res.body[:300]!r}"
        if isinstance(expect, HeadOk):
            self.assertEqual(res.status, 200, what)
            self.assertEqual(res.body, b"", what)
            self.assertGreater(int(res.headers.get("content-length", "0")), 0, what)
            self.assertIn("x-request-id", res.headers, what)
            return
        if isinstance(expect, Err):
            if opts.get("head"):
                # A HEAD answer has no body; the status and the headers still say what is wrong.
                self.assertEqual(res.status, expect.status, what)
            else:
                check_json_error(res.status, res.headers, res.body, expect.status)
            if expect.allow:
                self.assertEqual(res.headers.get("allow"), expect.allow, what)
            return
        self.assertEqual(res.status, 200, what)
        if opts.get("http10"):
            # An HTTP/1.0 client cannot read chunked encoding (RFC 9112 6.1).
            self.assertNotIn("transfer-encoding", res.headers, what)
        if expect.n is None:  # a healthcheck
            self.assertEqual(json.loads(res.body)["status"], "ok", what)
            return
        if expect.stream:
            self.assertTrue(res.headers.get("content-type", "").startswith("text/event-stream"),
                            what)
            kind, text, message = check_stream(res.body, expect.chat)
            self.assertEqual((kind, text), ("complete", tokens_text(expect.n)), what)
            return
        self.assertEqual(res.headers.get("content-type"), "application/json", what)
        choice = json.loads(res.body)["choices"][0]
        text = choice["message"]["content"] if expect.chat else choice["text"]
        self.assertEqual(text, tokens_text(expect.n), what)

    @staticmethod
    def trickle(conn):
        # One byte every 0.2 s: each byte arrives well within the header timeout, but the whole
        # header (60 s of trickle) never does. The deadline covers the header, not each byte.
        data = b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 250
        for b in data:
            if not conn.send(bytes([b])):
                return  # closed by the proxy: what is expected
            if _peer_closed(conn.sock):
                return
            time.sleep(0.2)
        raise AssertionError("the proxy took 60 s of trickled header bytes without closing")


if __name__ == "__main__":
    unittest.main()
