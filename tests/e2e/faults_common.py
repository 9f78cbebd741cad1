"""Helpers shared by the fault-injection suites (test_faults.py, test_malformed.py, test_clients.py).

The one promise every fault test checks: each client request ends with a complete answer or a
clear error (a JSON error body with an error status before the stream starts; an SSE
`data: {"error":...}` event followed by `data: [DONE]` after it), never a hang, a silent cut or an
empty 200; and afterwards the proxy holds no load: request_num is 0 and every backend's
glm_proxy_backend_inflight and glm_proxy_backend_load read 0.
"""

import http.client
import json
import re
import socket
import time

from harness import HTTP_TIMEOUT, get, healthcheck, wait_until

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"

_GAUGE_RE = re.compile(
    r'^(glm_proxy_backend_(?:inflight|load))\{([^}]*)\}\s+(\S+)\s*$', re.M)
_LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def backend_gauges(port):
    """{(gauge name, role, backend): value} of glm_proxy_backend_inflight and _load."""
    status, _, body = get(port, "/metrics")
    if status != 200:
        raise AssertionError(f"/metrics answered {status}: {body[:200]!r}")
    out = {}
    for m in _GAUGE_RE.finditer(body.decode("utf-8")):
        labels = dict(_LABEL_RE.findall(m.group(2)))
        out[(m.group(1), labels.get("role"), labels.get("backend"))] = float(m.group(3))
    return out


def load_state(port):
    """(request_num, {gauge key: value} of the backend gauges that are not 0, number of gauges)."""
    gauges = backend_gauges(port)
    busy = {k: v for k, v in gauges.items() if v != 0}
    return healthcheck(port)["request_num"], busy, len(gauges)


def wait_no_load(port, timeout=15.0):
    """Polls until request_num is 0 and every backend gauge reads 0 (and there are gauges)."""
    last = {}

    def idle():
        last["state"] = load_state(port)
        request_num, busy, count = last["state"]
        return request_num == 0 and not busy and count > 0

    wait_until(idle, timeout, message="the proxy's load did not return to 0",
               describe=lambda: last.get("state"))


def tokens_text(n, first=0):
    return "".join(f" tok{i}" for i in range(first, first + n))


# --------------------------------------------------------------------------------------------
# What an answer must look like


def check_json_error(status, headers, body, expected_status=None):
    """A clear error before the stream: an error status and a JSON body {"error": ...} with a
    non-empty message. Returns the message, or raises AssertionError saying what is wrong."""
    where = f"status {status}, headers {headers!r}, body {body[:500]!r}"
    if status < 400:
        raise AssertionError(f"expected an error status; {where}")
    if expected_status is not None and status != expected_status:
        raise AssertionError(f"expected status {expected_status}; {where}")
    if not headers.get("content-type", "").startswith("application/json"):
        raise AssertionError(f"error without a JSON content-type; {where}")
    try:
        doc = json.loads(body)
    except ValueError:
        raise AssertionError(f"error body is not JSON; {where}") from None
    err = doc.get("error") if isinstance(doc, dict) else None
    message = err.get("message") if isinstance(err, dict) else err
    if not isinstance(message, str) or not message:
        raise AssertionError(f"error body without a message; {where}")
    return message


def split_sse(body):
    """SSE data payloads of a de-chunked body (bytes); raises if the body is not UTF-8."""
    events = []
    for block in re.split(r"\r\n\r\n|\n\n|\r\r", body.decode("utf-8")):
        lines = [ln for ln in re.split(r"\r\n|\n|\r", block) if ln.startswith("data:")]
        if lines:
            events.append("\n".join(ln[5:].lstrip(" ") for ln in lines))
    return events


def check_stream(body, chat=False):
    """A 200 SSE body must end with exactly one `data: [DONE]`, every other event JSON, and an
    error event only right before [DONE]. Returns ("complete" | "error", text, error message)."""
    events = split_sse(body)
    if not events or events[-1] != "[DONE]":
        raise AssertionError(f"stream does not end with [DONE] (a silent cut): {body[-500:]!r}")
    if events.count("[DONE]") != 1:
        raise AssertionError(f"[DONE] more than once: {events!r}")
    text = ""
    for i, e in enumerate(events[:-1]):
        try:
            doc = json.loads(e)
        except ValueError:
            raise AssertionError(f"event {i} is not JSON: {e!r}") from None
        if "error" in doc:
            if i != len(events) - 2:
                raise AssertionError(f"error event is not the last before [DONE]: {events!r}")
            err = doc["error"]
            message = err.get("message") if isinstance(err, dict) else err
            if not isinstance(message, str) or not message:
                raise AssertionError(f"error event without a message: {e!r}")
            return "error", text, message
        for choice in doc.get("choices", []):
            text += (choice.get("delta", {}).get("content") if chat else choice.get("text")) or ""
    return "complete", text, None


def check_outcome(status, headers, body, stream, n=None, chat=False):
    """Classifies one finished request: ("complete", text) for a full answer with n tokens (when
    n is given), ("error", message) for a clear error before or after the stream started.
    Raises AssertionError for anything else (empty 200, cut stream, non-JSON error...)."""
    if status >= 400:
        return "error", check_json_error(status, headers, body)
    if status != 200:
        raise AssertionError(f"unexpected status {status}: {body[:300]!r}")
    if not body:
        raise AssertionError(f"an empty 200; headers {headers!r}")
    if stream:
        ctype = headers.get("content-type", "")
        if not ctype.startswith("text/event-stream"):
            raise AssertionError(f"a stream answered with content-type {ctype!r}: {body[:300]!r}")
        kind, text, message = check_stream(body, chat)
        if kind == "error":
            return "error", message
    else:
        try:
            doc = json.loads(body)
        except ValueError:
            raise AssertionError(f"a 200 whose body is not JSON: {body[:300]!r}") from None
        choice = doc["choices"][0]
        text = choice["message"]["content"] if chat else choice["text"]
    if n is not None and text != tokens_text(n):
        raise AssertionError(f"incomplete answer: {text!r}, expected {n} tokens")
    return "complete", text


def post(port, path, body, timeout=HTTP_TIMEOUT):
    """POSTs a JSON object -> (status, headers, body). A connection closed before the answer
    completed raises (http.client.IncompleteRead / RemoteDisconnected): a silent cut."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode()
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        payload = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# Raw HTTP over a socket, for what http.client will not send or cannot read


class RawResponse:
    def __init__(self, status, reason, version, headers, body, framing):
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers  # {lowercase name: value, joined with ", " when repeated}
        self.body = body
        self.framing = framing  # "length", "chunked" or "close"


class RawConnection:
    """A client socket that sends raw bytes and parses responses itself."""

    recv_size = 65536  # bytes one read may take (a subclass can play a slow reader)

    def __init__(self, port, timeout=HTTP_TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.timeout = timeout
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def send(self, data):
        """Sends everything, unless the peer closes first (it may have answered already: an
        error sent before a large body was read), which is left for read_response to see."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out waiting for the proxy; got {self.buf[:300]!r}")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(self.recv_size)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _take_line(self, deadline):
        while b"\r\n" not in self.buf:
            if not self._fill(deadline):
                raise AssertionError(f"connection closed mid-response; got {self.buf[:300]!r}")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_response(self, head_request=False, timeout=None):
        """Reads one response (skipping 1xx ones); None if the connection was closed first."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            while b"\r\n\r\n" not in self.buf:
                if not self._fill(deadline):
                    if self.buf:
                        raise AssertionError(f"connection closed mid-header: {self.buf[:300]!r}")
                    return None
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            m = re.match(r"(HTTP/\d\.\d) (\d{3}) ?(.*)$", lines[0])
            if not m:
                raise AssertionError(f"not an HTTP status line: {lines[0]!r}")
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                k = k.strip().lower()
                headers[k] = f"{headers[k]}, {v.strip()}" if k in headers else v.strip()
            status = int(m.group(2))
            if 100 <= status < 200:
                continue
            break
        if head_request or status in (204, 304):
            return RawResponse(status, m.group(3), m.group(1), headers, b"", "length")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []  # joined once at the end: linear in the body's size, even for MiBs
            while True:
                size = int(self._take_line(deadline).split(b";")[0], 16)
                if size == 0:
                    while self._take_line(deadline) != b"":  # trailers, then a blank line
                        pass
                    return RawResponse(status, m.group(3), m.group(1), headers, b"".join(parts),
                                       "chunked")
                while len(self.buf) < size + 2:
                    if not self._fill(deadline):
                        raise AssertionError("connection closed mid-chunk; body so far "
                                             f"{b''.join(parts)[-300:]!r}")
                parts.append(self.buf[:size])
                if self.buf[size:size + 2] != b"\r\n":
                    raise AssertionError(f"bad chunk framing: {self.buf[:size + 10]!r}")
                self.buf = self.buf[size + 2:]
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                if not self._fill(deadline):
                    raise AssertionError(f"connection closed mid-body: {self.buf!r}")
            body, self.buf = self.buf[:n], self.buf[n:]
            return RawResponse(status, m.group(3), m.group(1), headers, body, "length")
        while self._fill(deadline):
            pass
        body, self.buf = self.buf, b""
        return RawResponse(status, m.group(3), m.group(1), headers, body, "close")

    def read_until(self, needle, timeout=None):
        """Reads (without consuming) until `needle` is in what arrived; False if the peer closed
        first."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while needle not in self.buf:
            if not self._fill(deadline):
                return False
        return True

    def wait_closed(self, timeout=None):
        """True once the peer has closed (everything it sent before is kept in .buf)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.eof:
            self._fill(deadline)
        return True


def http_request(method, target, body=b"", headers=None, version="HTTP/1.1",
                 content_length=True, content_type="application/json"):
    """The bytes of one request: Host, then Content-Type / Content-Length unless disabled, then
    `headers` (a list of (name, value) pairs, or a dict), then the body."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    lines = [f"{method} {target} {version}".encode("latin-1"), b"Host: 127.0.0.1"]
    if content_type is not None:
        lines.append(b"Content-Type: " + content_type.encode("latin-1"))
    if content_length:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    for k, v in items:
        k = k if isinstance(k, bytes) else k.encode("latin-1")
        v = v if isinstance(v, bytes) else v.encode("latin-1")
        lines.append(k + b": " + v)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
