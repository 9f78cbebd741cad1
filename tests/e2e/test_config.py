"""Configuration sources: a TOML file (--config), GLM_PROXY_<FLAG> environment variables, and
--prefill/--decode HOST:PORT lists; the command line wins over the file, the file over the
environment. The effective configuration is logged at start."""

import os
import tempfile
import unittest

from harness import (GLM_PROXY_BIN, Process, clean_env, healthcheck, post_json, run_proxy,
                     start_mock, mock_stats)

COMPLETIONS = "/v1/completions"


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
        f = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
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


if __name__ == "__main__":
    unittest.main()
