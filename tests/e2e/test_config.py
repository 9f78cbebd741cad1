"""Configuration sources: a TOML file (--config), GLM_PROXY_<FLAG> environment variables, and
--prefill/--decode HOST:PORT lists; the command line wins over the file, the file over the
environment. The effective configuration is logged at start, at every log level. Every value is
range-checked and every error (exit 2) names the flag, and for the file its path and line."""

import os
import random
import re
import tempfile
import time
import unittest

from harness import (GLM_PROXY_BIN, TIMEOUT_SCALE, Process, clean_env, healthcheck, mock_stats,
                     post_json, run_proxy, start_mock)

COMPLETIONS = "/v1/completions"
MUTATIONS = 150


class ConfigTests(unittest.TestCase):
    def setUp(self):
        self.procs = []
        self.prefiller = self.own(start_mock(name="prefill-0", engine_id="prefill-0"))
        self.decoder = self.own(start_mock(name="decode-0", engine_id="decode-0"))

    def own(self, p):
        self.procs.append(p)
        return p

    def tearDown(self):
        for p in reversed(self.procs):
            p.stop()
            p.close_log()

    def start(self, args, env=None):
        p = self.own(Process("glm-proxy", [GLM_PROXY_BIN] + args, env=clean_env(env)))
        p.wait_listening()
        return p

    def assert_serves(self, proxy):
        status, _, body = post_json(proxy.port, COMPLETIONS, {"prompt": "hi", "max_tokens": 2})
        self.assertEqual(status, 200, body)
        self.assertEqual(mock_stats(self.prefiller.port)["prefill"], 1)
        self.assertEqual(mock_stats(self.decoder.port)["decode"], 1)

    def write_toml(self, text):
        f = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False, encoding="utf-8")
        f.write(text)
        f.close()
        self.addCleanup(os.unlink, f.name)
        return f.name

    def test_toml_file_with_command_line_override(self):
        path = self.write_toml(
            'host = "127.0.0.1"\n'
            'port = 1\n'  # the command line's --port 0 must win
            'prefiller-hosts = ["127.0.0.1"]\n'
            f'prefiller-ports = [{self.prefiller.port}]\n'
            'decoder-hosts = ["127.0.0.1"]\n'
            f'decoder-ports = [{self.decoder.port}]\n'
            'max-retries = 5\n')
        proxy = self.start(["--config", path, "--port", "0"])
        self.assert_serves(proxy)
        log = proxy.read_log()
        self.assertIn("max_retries=5", log)
        self.assertIn(f"prefillers=[127.0.0.1:{self.prefiller.port}]", log)

    def test_environment_variables(self):
        proxy = self.start([], env={
            "GLM_PROXY_HOST": "127.0.0.1", "GLM_PROXY_PORT": "0",
            "GLM_PROXY_PREFILL": f"127.0.0.1:{self.prefiller.port}",
            "GLM_PROXY_DECODE": f"127.0.0.1:{self.decoder.port}",
            "GLM_PROXY_WORKERS": "2"})
        self.assert_serves(proxy)
        self.assertIn("workers=2", proxy.read_log())
        h = healthcheck(proxy.port)
        self.assertEqual((h["prefill_instances"], h["decode_instances"]), (1, 1))

    def test_command_line_wins_over_environment(self):
        proxy = self.start(["--host", "127.0.0.1", "--port", "0", "--workers", "1"],
                           env={"GLM_PROXY_WORKERS": "3",
                                "GLM_PROXY_PREFILL": f"127.0.0.1:{self.prefiller.port}",
                                "GLM_PROXY_DECODE": f"127.0.0.1:{self.decoder.port}"})
        self.assertIn("workers=1", proxy.read_log())

    def test_prefill_and_decode_lists(self):
        proxy = self.start(["--host", "127.0.0.1", "--port", "0",
                            "--prefill", f"127.0.0.1:{self.prefiller.port}",
                            "--decode", f"localhost:{self.decoder.port}"])
        self.assert_serves(proxy)
        h = healthcheck(proxy.port)
        self.assertEqual((h["prefill_instances"], h["decode_instances"]), (1, 1))

    def test_bad_address_in_list_is_a_usage_error(self):
        code, out = run_proxy(["--prefill", "no-port-here"])
        self.assertEqual(code, 2)
        self.assertIn("HOST:PORT", out)

    def test_bad_config_file_is_a_usage_error(self):
        path = self.write_toml("port = \"not a number\"\n")
        code, out = run_proxy(["--config", path])
        self.assertEqual(code, 2, out)
        self.assertIn(f"{path}:1:", out)
        self.assertIn("'port' must be a number", out)

    # -- ranges ---------------------------------------------------------------------------------

    # (flag, value) pairs outside each flag's range or set; every one must be refused with exit 2
    # and a message that names the flag.
    OUT_OF_RANGE = [
        ("--max-retries", "-5"), ("--max-retries", "101"), ("--port", "70000"), ("--port", "-1"),
        ("--workers", "0"), ("--workers", "257"), ("--retry-delay", "-1"), ("--retry-delay", "nan"),
        ("--max-waiting-retries", "0"), ("--waiting-retry-interval", "0"),
        ("--connect-timeout", "0"), ("--connect-timeout", "inf"), ("--prefill-timeout", "-3"),
        ("--stream-idle-timeout", "0"), ("--client-write-timeout", "0"), ("--header-timeout", "0"),
        ("--drain-timeout", "-1"), ("--max-body-bytes", "0"), ("--max-connections", "-1"),
        ("--max-inflight", "-3"), ("--queue-timeout", "-0.5"), ("--eject-after", "-1"),
        ("--eject-seconds", "0"), ("--prefiller-ports", "0"), ("--decoder-ports", "70000"),
        ("--log-level", "LOUD"), ("--log-format", "xml"), ("--api-key", ""),
        ("--admin-token", "two words"), ("--host", ""), ("--max-retries", "three"),
    ]

    def test_every_flag_is_range_checked(self):
        for flag, value in self.OUT_OF_RANGE:
            with self.subTest(flag=flag, value=value):
                code, out = run_proxy([flag, value])
                self.assertEqual(code, 2, out)
                self.assertIn(flag, out)
                self.assertNotIn("listening on", out)

    def test_range_edges_are_accepted(self):
        proxy = self.start(["--host", "127.0.0.1", "--port", "0",
                            "--prefill", f"127.0.0.1:{self.prefiller.port}",
                            "--decode", f"127.0.0.1:{self.decoder.port}",
                            "--max-retries", "0", "--retry-delay", "0", "--drain-timeout", "0",
                            "--max-connections", "0", "--max-inflight", "0",
                            "--queue-timeout", "0", "--eject-after", "0", "--workers", "1"])
        self.assert_serves(proxy)

    def test_value_out_of_range_in_the_environment_names_the_variable(self):
        code, out = run_proxy([], env={"GLM_PROXY_MAX_RETRIES": "-5"})
        self.assertEqual(code, 2, out)
        self.assertIn("--max-retries", out)
        self.assertIn("GLM_PROXY_MAX_RETRIES", out)

    # -- the TOML file --------------------------------------------------------------------------

    def assert_file_error(self, text, line, *fragments):
        path = self.write_toml(text)
        code, out = run_proxy(["--config", path])
        self.assertEqual(code, 2, out)
        self.assertIn(f"{path}:{line}:", out)
        for f in fragments:
            self.assertIn(f, out)
        self.assertNotIn("listening on", out)

    def test_empty_value_is_an_error_naming_file_line_and_key(self):
        self.assert_file_error('host = "127.0.0.1"\nport = \n', 2, "'port'", "no value")
        self.assert_file_error('port =   # nothing\n', 1, "'port'", "no value")

    def test_unknown_key_is_an_error_naming_file_line_and_key(self):
        self.assert_file_error('# comment\n\nprefiller_hosts = ["127.0.0.1"]\n', 3,
                               "unknown key 'prefiller_hosts'", "'prefiller-hosts'")
        self.assert_file_error('port = 8000\nmax-retrys = 3\n', 2, "unknown key 'max-retrys'")

    def test_malformed_values_are_errors_naming_file_line_and_key(self):
        cases = [
            ('host = 127.0.0.1\n', "'host'"),                 # a string without quotes
            ('max-retries = 3 3\n', "'max-retries'"),         # text after the value
            ('workers = "2"\n', "'workers' must be a number"),
            ('host = "unterminated\n', "'host'"),
            ('prefiller-ports = [8001, 8002\n', "'prefiller-ports'"),
            ('port = [8000]\n', "'port' takes one value"),
            ('reuse-port = 1\n', "'reuse-port' must be true or false"),
            ('[proxy]\n', "tables"),
        ]
        for text, fragment in cases:
            with self.subTest(text=text):
                self.assert_file_error(text, 1, fragment)

    def test_repeated_key_is_an_error(self):
        self.assert_file_error('port = 1\nport = 2\n', 2, "'port' is set twice")

    def test_value_out_of_range_in_the_file_names_file_line_and_flag(self):
        self.assert_file_error('host = "127.0.0.1"\n\nmax-retries = -5\n', 3, "--max-retries")

    def test_full_toml_syntax_that_glm_proxy_reads(self):
        path = self.write_toml(
            '\ufeff# every kind of value glm-proxy takes (after a byte order mark)\n'
            "host = '127.0.0.1'   # a literal string\n"
            'port = 0\n'
            f'prefill = ["127.0.0.1:{self.prefiller.port}",]\n'
            f'decode = "127.0.0.1:{self.decoder.port}"\n'  # one value for a list
            'max-body-bytes = 1_048_576\n'
            'retry-delay = 1e-3\n'
            'reuse-port = false\n'
            'log-level = "WARNING"\r\n')
        proxy = self.start(["--config", path])
        self.assert_serves(proxy)
        log = proxy.read_log()
        self.assertIn("max_body_bytes=1048576", log)
        self.assertIn("retry_delay=0.001", log)

    def test_mutated_files_are_refused_or_served_never_a_crash(self):
        # The reader parses untrusted-ish text by hand: mutations of a valid file must each end
        # as a usage error (exit 2, one "error:" line) or as a file that is still valid (it
        # serves); never a crash, a hang or another exit code.
        base = ('# glm-proxy\nhost = "127.0.0.1"\nport = 0\n'
                f'prefill = ["127.0.0.1:{self.prefiller.port}"]\n'
                f"decode = ['127.0.0.1:{self.decoder.port}']\n"
                'max-retries = 2\nretry-delay = 0.5e-3\nreuse-port = false\n'
                'log-level = "INFO"  # comment\n')
        alphabet = list('"\'[]=#,\\ \t\nabc019_-.eu{}') + ["\x00", "\xff", "\u00e9"]
        rng = random.Random(16)
        outcomes = {"refused": 0, "served": 0}
        for i in range(MUTATIONS):
            chars = list(base)
            for _ in range(rng.randint(1, 3)):
                pos = rng.randrange(len(chars))
                op = rng.random()
                if op < 0.4:
                    del chars[pos]
                elif op < 0.8:
                    chars.insert(pos, rng.choice(alphabet))
                else:
                    chars[pos] = rng.choice(alphabet)
            text = "".join(chars)
            with self.subTest(i=i, text=text):
                path = self.write_toml(text)
                p = Process("glm-proxy", [GLM_PROXY_BIN, "--config", path, "--host", "127.0.0.1",
                                          "--port", "0"], env=clean_env())
                try:
                    deadline = time.monotonic() + 10 * TIMEOUT_SCALE
                    while p.proc.poll() is None and "listening on" not in p.read_log():
                        self.assertLess(time.monotonic(), deadline, "neither refused nor served")
                        time.sleep(0.005)
                    if p.proc.poll() is None:
                        outcomes["served"] += 1
                        self.assertEqual(p.stop(), 0, p.read_log())
                    else:
                        outcomes["refused"] += 1
                        self.assertEqual(p.proc.returncode, 2, p.read_log())
                        self.assertRegex(p.read_log(), r"^glm-proxy: error: ", p.read_log())
                finally:
                    p.stop()
                    p.close_log()
        # Both outcomes occur, so the loop tested something on each side.
        self.assertGreater(outcomes["refused"], MUTATIONS // 4, outcomes)
        self.assertGreater(outcomes["served"], 0, outcomes)

    # -- version, start-up lines ----------------------------------------------------------------

    def test_version(self):
        with open(os.path.join(os.path.dirname(__file__), "..", "..", "CMakeLists.txt")) as f:
            version = re.search(r"project\(glm-proxy VERSION (\S+)", f.read()).group(1)
        code, out = run_proxy(["--version"])
        self.assertEqual(code, 0, out)
        self.assertEqual(out.strip(), f"glm-proxy {version}")

    def test_listening_line_and_configuration_at_every_log_level(self):
        for level in ("WARNING", "ERROR", "CRITICAL"):
            for fmt in ("text", "json"):
                with self.subTest(level=level, format=fmt):
                    proxy = self.start(["--host", "127.0.0.1", "--port", "0",
                                        "--prefill", f"127.0.0.1:{self.prefiller.port}",
                                        "--decode", f"127.0.0.1:{self.decoder.port}",
                                        "--log-level", level, "--log-format", fmt])
                    log = proxy.read_log()
                    self.assertIn("configuration: host=127.0.0.1", log)
                    self.assertIn(f"log_level={level}", log)
                    self.assertGreater(proxy.port, 0)
                    # The level still filters everything else: no access line.
                    status, _, _ = post_json(proxy.port, COMPLETIONS,
                                             {"prompt": "hi", "max_tokens": 1})
                    self.assertEqual(status, 200)
                    self.assertEqual(proxy.stop(), 0)
                    self.assertNotRegex(proxy.read_log(), r'access client=|"type":"access"')


if __name__ == "__main__":
    unittest.main()
