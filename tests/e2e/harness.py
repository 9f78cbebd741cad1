"""End-to-end test harness: real glm-proxy and mock-vllm processes on loopback, port 0.

Standard library only. Every process writes stdout and stderr to a temporary log file (so no pipe
can fill up); the harness polls that file for the "listening on HOST:PORT" line.

Binaries come from $GLM_PROXY_BIN and $MOCK_VLLM_BIN (CTest sets them), defaulting to the build
directory next to this file's repository.

Sanitizer runs (tests/sanitize.sh) use three more variables:
  GLM_PROXY_EXTRA_ARGS    appended to every glm-proxy started as a server (Process), e.g.
                          "--workers 2"; a flag the test already passes (or sets through its
                          GLM_PROXY_<FLAG> environment variable) is not overridden.
  GLM_TEST_TIMEOUT_SCALE  multiplies the harness's waiting bounds (start, HTTP, wait_until, stop
                          grace): instrumented binaries are slower. It never turns into a timing
                          assertion: it only lets a poll wait longer.
  ASAN_OPTIONS, UBSAN_OPTIONS, TSAN_OPTIONS  passed through to the processes; a sanitizer report
                          in a process's log (or its exit with the "exitcode=" these options set)
                          fails the test that stops it.
"""

import atexit
import http.client
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

_REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GLM_PROXY_BIN = os.environ.get("GLM_PROXY_BIN") or os.path.join(_REPO, "build", "glm-proxy")
MOCK_VLLM_BIN = os.environ.get("MOCK_VLLM_BIN") or os.path.join(_REPO, "build", "mock-vllm")

LISTENING_RE = re.compile(r"listening on \[?([^\]\s]+)\]?:(\d+)")
TIMEOUT_SCALE = max(1.0, float(os.environ.get("GLM_TEST_TIMEOUT_SCALE") or 1))
START_TIMEOUT = 10.0 * TIMEOUT_SCALE
HTTP_TIMEOUT = 30.0 * TIMEOUT_SCALE

PREFILL_KV = {
    "do_remote_decode": True,
    "do_remote_prefill": False,
    "remote_engine_id": None,
    "remote_block_ids": None,
    "remote_host": None,
    "remote_port": None,
}


# --------------------------------------------------------------------------------------------
# Sanitizer reports


# The first line of a report of each sanitizer (UBSan's is "file:line:col: runtime error: ...").
SANITIZER_RE = re.compile(r"ERROR: (?:Address|Leak|Memory)Sanitizer|WARNING: ThreadSanitizer|"
                          r"ThreadSanitizer: |runtime error: |ERROR: UndefinedBehaviorSanitizer")


def _sanitizer_exit_codes():
    """The exit codes the sanitizers' options in our environment give a process with a report."""
    codes = set()
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS"):
        for m in re.finditer(r"(?:^|:)exitcode=(\d+)", os.environ.get(var, "")):
            codes.add(int(m.group(1)))
    return codes


SANITIZER_EXIT_CODES = _sanitizer_exit_codes()


class SanitizerError(AssertionError):
    """A process reported a sanitizer error (ASan, UBSan, LSan, TSan)."""


# Every report found, so that one a test's own cleanup swallowed still fails the run (atexit).
_sanitizer_reports = []
_live_processes = []


def sanitizer_report(text):
    """The sanitizer report in a log (from its first line, at most 60 lines), or None."""
    m = SANITIZER_RE.search(text)
    if m is None:
        return None
    start = text.rfind("\n", 0, m.start()) + 1
    return "\n".join(text[start:].splitlines()[:60])


@atexit.register
def _fail_run_on_sanitizer_reports():
    # Processes a test forgot to stop are stopped here, so their reports (LSan's come at exit)
    # are seen too.
    for p in list(_live_processes):
        try:
            p.stop()
        except SanitizerError:
            pass
    if _sanitizer_reports:
        sys.stdout.flush()
        sys.stderr.write(f"\n===== {len(_sanitizer_reports)} sanitizer report(s): failing the run\n")
        for name, report in _sanitizer_reports:
            sys.stderr.write(f"----- {name}\n{report}\n")
        sys.stderr.flush()
        os._exit(1)


def _proxy_extra_args(argv, env):
    """$GLM_PROXY_EXTRA_ARGS as flag groups ("--flag [values...]"), minus the flags argv already
    has or env sets as GLM_PROXY_<FLAG> (a test that chooses a value keeps it)."""
    extra = shlex.split(os.environ.get("GLM_PROXY_EXTRA_ARGS", ""))
    present = {a.split("=", 1)[0] for a in argv[1:] if a.startswith("--")}
    env = os.environ if env is None else env
    out = []
    group = []

    def flush():
        if group:
            flag = group[0].split("=", 1)[0]
            env_name = "GLM_PROXY_" + flag.lstrip("-").upper().replace("-", "_")
            if flag not in present and env_name not in env:
                out.extend(group)

    for token in extra:
        if token.startswith("-"):
            flush()
            group = [token]
        else:
            group.append(token)
    flush()
    return out


# --------------------------------------------------------------------------------------------
# Processes


class Process:
    """A child process whose stdout and stderr go to one temporary log file.

    A glm-proxy (argv[0] is GLM_PROXY_BIN) also gets $GLM_PROXY_EXTRA_ARGS.
    """

    def __init__(self, name, argv, env=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        if self.argv and self.argv[0] == GLM_PROXY_BIN:
            self.argv += _proxy_extra_args(self.argv, env)
        self.sanitizer_checked = False
        self.log = tempfile.NamedTemporaryFile(prefix=f"e2e-{name}-", suffix=".log", delete=False)
        self.log_path = self.log.name
        self.port = None
        self.host = None
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        _live_processes.append(self)

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_listening(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            m = LISTENING_RE.search(self.read_log())
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
                return self.port
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {code} before listening\n"
                    f"command: {' '.join(self.argv)}\nlog:\n{self.read_log()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{self.name} printed no 'listening on HOST:PORT' line within {timeout} s\n"
                    f"command: {' '.join(self.argv)}\nlog:\n{self.read_log()}"
                )
            time.sleep(0.01)

    def running(self):
        return self.proc.poll() is None

    def stop(self, grace=5.0):
        """SIGTERM, then SIGKILL after `grace` seconds (scaled). Returns the exit code.

        Raises SanitizerError, once, if the log holds a sanitizer report or the process exited
        with a sanitizer's exit code; the process is stopped either way.
        """
        grace *= TIMEOUT_SCALE
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=grace)
        if self in _live_processes:
            _live_processes.remove(self)
        self.check_sanitizer()
        return self.proc.returncode

    def check_sanitizer(self):
        """Once the process has exited: raises SanitizerError if it reported an error."""
        if self.sanitizer_checked or self.proc.poll() is None:
            return
        self.sanitizer_checked = True
        code = self.proc.returncode
        report = sanitizer_report(self.read_log())
        if report is None and code in SANITIZER_EXIT_CODES:
            report = f"(exit code {code}, a sanitizer's, and no report in the log)\n"
            report += "\n".join(self.read_log().splitlines()[-40:])
        if report is not None:
            _sanitizer_reports.append((self.name, report))
            raise SanitizerError(f"{self.name} (exit code {code}) reported a sanitizer error:\n"
                                 f"{report}")

    def close_log(self, remove=True):
        # A report must not vanish with the log (the atexit hook fails the run on it).
        try:
            self.check_sanitizer()
        except SanitizerError as e:
            sys.stderr.write(f"\n{e}\n")
        try:
            self.log.close()
        except OSError:
            pass
        if remove:
            try:
                os.unlink(self.log_path)
            except OSError:
                pass


def clean_env(extra=None, drop=("OPENAI_API_KEY",)):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    if extra:
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
    return env


def start_mock(*role_args, name="mock-vllm", prefill_delay_ms=None, token_interval_ms=None,
               cached_tokens=None, engine_id=None, extra_args=(), host="127.0.0.1"):
    """Starts mock-vllm on `host` (127.0.0.1 unless given), port 0; returns the Process with
    .port set.

    role_args are passed through verbatim (e.g. "--prefill-delay-ms", "200"); the keyword
    arguments are a convenience for the common flags.
    """
    argv = [MOCK_VLLM_BIN, "--host", host, "--port", "0"]
    argv += [str(a) for a in role_args]
    if prefill_delay_ms is not None:
        argv += ["--prefill-delay-ms", str(prefill_delay_ms)]
    if token_interval_ms is not None:
        argv += ["--token-interval-ms", str(token_interval_ms)]
    if cached_tokens is not None:
        argv += ["--cached-tokens", str(cached_tokens)]
    if engine_id is not None:
        argv += ["--engine-id", str(engine_id)]
    argv += [str(a) for a in extra_args]
    p = Process(name, argv, env=clean_env())
    try:
        p.wait_listening()
    except Exception:  # the error message carries the log
        p.stop()
        p.close_log()
        raise
    return p


def proxy_argv(prefill_ports, decode_ports, extra_args=(), host="127.0.0.1"):
    argv = [GLM_PROXY_BIN, "--host", "127.0.0.1", "--port", "0"]
    if prefill_ports:
        argv += ["--prefiller-hosts"] + [host] * len(prefill_ports)
        argv += ["--prefiller-ports"] + [str(p) for p in prefill_ports]
    if decode_ports:
        argv += ["--decoder-hosts"] + [host] * len(decode_ports)
        argv += ["--decoder-ports"] + [str(p) for p in decode_ports]
    argv += [str(a) for a in extra_args]
    return argv


def start_proxy(prefill_ports, decode_ports, extra_args=(), env=None, name="glm-proxy"):
    """Starts glm-proxy on 127.0.0.1, port 0, with the given backends; returns the Process.

    env: extra environment variables (None values remove a variable). OPENAI_API_KEY is removed
    from the inherited environment unless given here.
    """
    p = Process(name, proxy_argv(prefill_ports, decode_ports, extra_args), env=clean_env(env))
    try:
        p.wait_listening()
    except Exception:  # the error message carries the log
        p.stop()
        p.close_log()
        raise
    return p


def start_proxy_args(args, env=None, name="glm-proxy"):
    """Starts glm-proxy on 127.0.0.1, port 0, with exactly the given further arguments (backend
    lists included, e.g. hosts that are not 127.0.0.1); returns the Process."""
    argv = [GLM_PROXY_BIN, "--host", "127.0.0.1", "--port", "0"] + [str(a) for a in args]
    p = Process(name, argv, env=clean_env(env))
    try:
        p.wait_listening()
    except Exception:  # the error message carries the log
        p.stop()
        p.close_log()
        raise
    return p


def closed_ports(n=1):
    """n distinct loopback TCP ports nothing listens on (bound together, then released:
    connections to them are refused)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def closed_port():
    return closed_ports(1)[0]


def ipv6_loopback_available():
    if not socket.has_ipv6:
        return False
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        return False
    try:
        s.bind(("::1", 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


def run_proxy(args, timeout=10.0, env=None):
    """Runs glm-proxy with `args` to completion; returns (exit code, stdout+stderr text)."""
    r = subprocess.run([GLM_PROXY_BIN] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout * TIMEOUT_SCALE, env=clean_env(env))
    out = r.stdout.decode("utf-8", "replace")
    report = sanitizer_report(out)
    if report is not None:
        _sanitizer_reports.append(("glm-proxy " + " ".join(str(a) for a in args), report))
        raise SanitizerError(f"glm-proxy (exit code {r.returncode}) reported a sanitizer error:\n"
                             f"{report}")
    return r.returncode, out


class Cluster:
    """n prefillers, m decoders (mock-vllm) and one glm-proxy in front of them.

    Use as a context manager, or call start() / stop(). Prefillers get --engine-id prefill-<i>,
    decoders decode-<i>.
    """

    def __init__(self, prefillers=2, decoders=2, prefill_args=(), decode_args=(),
                 proxy_args=(), proxy_env=None):
        self.n_prefill = prefillers
        self.n_decode = decoders
        self.prefill_args = list(prefill_args)
        self.decode_args = list(decode_args)
        self.proxy_args = list(proxy_args)
        self.proxy_env = proxy_env
        self.prefillers = []
        self.decoders = []
        self.proxy = None

    # -- lifecycle
    def start(self):
        try:
            for i in range(self.n_prefill):
                self.prefillers.append(start_mock(*self.prefill_args, name=f"prefill-{i}",
                                                  engine_id=f"prefill-{i}"))
            for i in range(self.n_decode):
                self.decoders.append(start_mock(*self.decode_args, name=f"decode-{i}",
                                                engine_id=f"decode-{i}"))
            self.proxy = start_proxy(self.prefill_ports, self.decode_ports, self.proxy_args,
                                     env=self.proxy_env)
        except Exception:
            self.stop()
            print(self.logs(), file=sys.stderr)
            self.close_logs()
            raise
        return self

    def processes(self):
        return ([self.proxy] if self.proxy else []) + self.prefillers + self.decoders

    def stop(self):
        """Stops every process; then raises the first SanitizerError any of them gave."""
        # The proxy first: it must not see its backends vanish while it drains.
        sanitizer_error = None
        for p in self.processes():
            try:
                p.stop()
            except SanitizerError as e:
                sanitizer_error = sanitizer_error or e
            except Exception as e:  # keep stopping the others
                print(f"stopping {p.name}: {e}", file=sys.stderr)
        if sanitizer_error is not None:
            raise sanitizer_error

    def logs(self):
        out = []
        for p in self.processes():
            code = p.proc.returncode
            out.append(f"----- {p.name} (port {p.port}, exit {code}) {' '.join(p.argv)}\n"
                       f"{p.read_log()}")
        return "\n".join(out)

    def close_logs(self, keep=False):
        for p in self.processes():
            p.close_log(remove=not keep)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            if exc[0] is not None:
                print(self.logs(), file=sys.stderr)
            self.close_logs()
        return False

    # -- addresses
    @property
    def port(self):
        return self.proxy.port

    @property
    def prefill_ports(self):
        return [p.port for p in self.prefillers]

    @property
    def decode_ports(self):
        return [p.port for p in self.decoders]

    @property
    def mocks(self):
        return self.prefillers + self.decoders

    # -- convenience
    def all_mock_requests(self):
        return {p.name: mock_requests(p.port) for p in self.mocks}

    def reset_mocks(self):
        for p in self.mocks:
            mock_reset(p.port)

    def request_num(self):
        return healthcheck(self.port)["request_num"]

    def wait_idle(self, timeout=15.0):
        """Waits until /healthcheck says request_num == 0."""
        return wait_until(lambda: self.request_num() == 0, timeout,
                          message="request_num did not return to 0",
                          describe=lambda: healthcheck(self.port))


class ClusterTestCase(unittest.TestCase):
    """Starts a Cluster before each test and always stops it afterwards.

    Override the class attributes to configure it; a test may also call start_cluster() for a
    differently configured one (stopped at cleanup too). Logs of every process are printed when
    the test fails or errors.
    """

    prefillers = 2
    decoders = 2
    prefill_args = ()
    decode_args = ()
    proxy_args = ()
    proxy_env = None
    auto_cluster = True

    def setUp(self):
        super().setUp()
        self._clusters = []
        self.cluster = None
        if self.auto_cluster:
            self.cluster = self.start_cluster()

    def start_cluster(self, **overrides):
        options = dict(prefillers=self.prefillers, decoders=self.decoders,
                       prefill_args=self.prefill_args, decode_args=self.decode_args,
                       proxy_args=self.proxy_args, proxy_env=self.proxy_env)
        options.update(overrides)
        c = Cluster(**options)
        c.start()
        self._clusters.append(c)
        self.addCleanup(self._stop_cluster, c)
        return c

    def _failed(self):
        outcome = getattr(self, "_outcome", None)
        if outcome is None:
            return False
        if not getattr(outcome, "success", True):
            return True
        result = getattr(outcome, "result", None)
        if result is not None:
            for test, _ in list(result.errors) + list(result.failures):
                if test is self:
                    return True
        return False

    def _stop_cluster(self, c):
        try:
            c.stop()  # a SanitizerError here makes the test an error
        finally:
            if self._failed():
                sys.stderr.write(f"\n===== logs of {self.id()} =====\n{c.logs()}\n")
            c.close_logs()

    @property
    def port(self):
        return self.cluster.port


# --------------------------------------------------------------------------------------------
# HTTP helpers


def _encode(obj):
    if obj is None:
        return b""
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj)
    if isinstance(obj, str):
        return obj.encode("utf-8")
    return json.dumps(obj).encode("utf-8")


def _headers_dict(msg):
    out = {}
    for k, v in msg.items():
        k = k.lower()
        out[k] = f"{out[k]}, {v}" if k in out else v
    return out


def request(port, method, path, body=None, headers=None, timeout=HTTP_TIMEOUT, host="127.0.0.1"):
    """One HTTP request on a fresh connection -> (status, headers {lowercase: value}, body bytes)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        data = _encode(body) if body is not None else None
        h = {}
        if data is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        payload = resp.read()
        return resp.status, _headers_dict(resp.headers), payload
    finally:
        conn.close()


def post_json(port, path, obj, headers=None, timeout=HTTP_TIMEOUT):
    """POSTs obj (serialized with json.dumps) or raw bytes/str -> (status, headers, body bytes)."""
    return request(port, "POST", path, obj if obj is not None else b"", headers, timeout)


def get(port, path, timeout=HTTP_TIMEOUT, host="127.0.0.1"):
    return request(port, "GET", path, None, None, timeout, host=host)


def parse_sse(data):
    """Parses an SSE body (bytes or str) -> list of event data payloads (str).

    Events are separated by a blank line; the `data:` lines of an event are joined with "\\n"
    (one space after the colon is dropped). Comments and other fields are ignored; an event
    without data lines yields nothing. An unterminated last event is still reported.
    """
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data).decode("utf-8")
    lines = re.split(r"\r\n|\r|\n", data)
    events = []
    current = None
    for line in lines:
        if line == "":
            if current is not None:
                events.append("\n".join(current))
            current = None
            continue
        if line.startswith(":"):
            continue
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            if current is None:
                current = []
            current.append(value)
    if current is not None:
        events.append("\n".join(current))
    return events


def stream(port, path, obj, headers=None, timeout=HTTP_TIMEOUT):
    """POSTs a streaming request -> (status, headers, list of SSE data payload strings).

    The whole body is read (http.client undoes the chunked encoding) and then parsed as SSE.
    A non-2xx answer is returned with its raw body as the single "event" for diagnostics:
    check the status first.
    """
    status, h, body = post_json(port, path, obj, headers, timeout)
    if status // 100 != 2 or not h.get("content-type", "").startswith("text/event-stream"):
        return status, h, [body.decode("utf-8", "replace")]
    return status, h, parse_sse(body)


def stream_raw(port, path, obj, headers=None, timeout=HTTP_TIMEOUT):
    """Like stream(), but returns the raw (de-chunked) body bytes as the third item."""
    return post_json(port, path, obj, headers, timeout)


def healthcheck(port):
    status, _, body = get(port, "/healthcheck")
    if status != 200:
        raise AssertionError(f"/healthcheck answered {status}: {body!r}")
    return json.loads(body)


def mock_requests(port, host="127.0.0.1"):
    """GET /mock/requests -> [{"method","target","headers":{lowercase},"body":str}, ...]."""
    status, _, body = get(port, "/mock/requests", host=host)
    if status != 200:
        raise AssertionError(f"/mock/requests answered {status}: {body!r}")
    return json.loads(body)


def mock_reset(port):
    status, _, body = post_json(port, "/mock/reset", b"")
    if status != 200:
        raise AssertionError(f"/mock/reset answered {status}: {body!r}")


def mock_stats(port, host="127.0.0.1"):
    status, _, body = get(port, "/mock/stats", host=host)
    if status != 200:
        raise AssertionError(f"/mock/stats answered {status}: {body!r}")
    return json.loads(body)


def body_bytes(record):
    """The exact bytes of a recorded request body (the mock writes UTF-8 bodies as they are)."""
    return record["body"].encode("utf-8")


# --------------------------------------------------------------------------------------------
# Raw sockets (client disconnects)


def raw_http_request(method, path, body, host="127.0.0.1", port=80, extra_headers=None):
    data = _encode(body)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}",
             "Content-Type: application/json", f"Content-Length: {len(data)}"]
    for k, v in (extra_headers or {}).items():
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


def open_raw(port, method, path, body, timeout=HTTP_TIMEOUT):
    """Connects, sends one request and returns the socket without reading anything."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(raw_http_request(method, path, body, port=port))
    return s


def read_until(sock, predicate, timeout=HTTP_TIMEOUT):
    """Reads from sock until predicate(bytes so far) is true; returns the bytes."""
    buf = b""
    deadline = time.monotonic() + timeout
    while not predicate(buf):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out reading; got {buf!r}")
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed early; got {buf!r}")
        buf += chunk
    return buf


# --------------------------------------------------------------------------------------------
# Polling


def wait_until(predicate, timeout=10.0, interval=0.02, message="condition not met",
               describe=None):
    """Polls predicate() until it returns a truthy value (returned) or `timeout` seconds pass
    (AssertionError with `message` and, if given, describe()'s last value). Exceptions raised by
    the predicate count as "not yet" and are reported if the timeout expires."""
    timeout *= TIMEOUT_SCALE
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last_error = None
        except Exception as e:  # noqa: BLE001 - a predicate may race a starting server
            last_error = e
        if time.monotonic() > deadline:
            detail = ""
            if describe is not None:
                try:
                    detail = f"; state: {describe()!r}"
                except Exception as e:  # noqa: BLE001
                    detail = f"; state unavailable: {e!r}"
            if last_error is not None:
                detail += f"; last error: {last_error!r}"
            raise AssertionError(f"{message} within {timeout} s{detail}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# A scripted HTTP backend, for answers mock-vllm cannot give (odd SSE framing, text errors)


class FakeResponse:
    """What a FakeServer answers: `pieces` are sent as one HTTP chunk each (chunked=True) with
    `delay` seconds between them, or concatenated with a Content-Length (chunked=False)."""

    def __init__(self, status=200, content_type="text/event-stream; charset=utf-8", pieces=(),
                 chunked=True, delay=0.0):
        self.status = status
        self.content_type = content_type
        self.pieces = [_encode(p) for p in pieces]
        self.chunked = chunked
        self.delay = delay


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable"}


class FakeServer:
    """A tiny threaded HTTP/1.1 server on 127.0.0.1, port 0.

    handler(record) -> FakeResponse, where record is {"method","target","headers":{lowercase},
    "body": bytes}; every request is appended to .requests first. Each response carries
    "Connection: close" and the connection is closed after it. TCP_NODELAY is set so that each
    chunk leaves in its own segment.
    """

    def __init__(self, handler, host="127.0.0.1"):
        self.handler = handler
        self.requests = []
        self.errors = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        self._closing = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def close(self):
        self._closing = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def recorded(self, method=None, path=None):
        with self._lock:
            out = list(self.requests)
        return [r for r in out if (method is None or r["method"] == method)
                and (path is None or r["target"].split("?", 1)[0] == path)]

    def _accept_loop(self):
        while not self._closing:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_request(conn):
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = conn.recv(65536)
            if not data:
                return None
            buf += data
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                while b"\r\n" not in rest:
                    data = conn.recv(65536)
                    if not data:
                        return None
                    rest += data
                size_line, rest = rest.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(rest) < size + 2:
                    data = conn.recv(65536)
                    if not data:
                        return None
                    rest += data
                body += rest[:size]
                rest = rest[size + 2:]
                if size == 0:
                    break
        else:
            length = int(headers.get("content-length", "0") or 0)
            while len(rest) < length:
                data = conn.recv(65536)
                if not data:
                    return None
                rest += data
            body = rest[:length]
        return {"method": method, "target": target, "headers": headers, "body": body}

    def _serve(self, conn):
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(HTTP_TIMEOUT)
            record = self._read_request(conn)
            if record is None:
                return
            with self._lock:
                self.requests.append(record)
            res = self.handler(record)
            head = [f"HTTP/1.1 {res.status} {_REASONS.get(res.status, 'Status')}",
                    f"Content-Type: {res.content_type}", "Connection: close"]
            if res.chunked:
                head.append("Transfer-Encoding: chunked")
                conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
                for piece in res.pieces:
                    if not piece:
                        continue
                    conn.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    if res.delay:
                        time.sleep(res.delay)
                conn.sendall(b"0\r\n\r\n")
            else:
                body = b"".join(res.pieces)
                head.append(f"Content-Length: {len(body)}")
                conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            # Let the peer read everything before the close.
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(2)
            while conn.recv(65536):
                pass
        except Exception as e:  # noqa: BLE001 - the peer may leave at any time
            with self._lock:
                self.errors.append(repr(e))
        finally:
            conn.close()
