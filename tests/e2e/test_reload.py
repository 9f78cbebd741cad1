"""SIGHUP re-reads --config and applies what can change without a restart: the instance lists
(new instances are probed as pending, as /instances/add does; missing ones are removed, as
/instances/remove does) and the log level. It logs what it changed and what needs a restart, keeps
the running configuration when the file is bad, and never exits."""

import os
import signal
import tempfile
import unittest

from harness import (GLM_PROXY_BIN, Process, clean_env, healthcheck, mock_stats, post_json,
                     start_mock, wait_until)

COMPLETIONS = "/v1/completions"


def instances(port):
    """{(role, address): state} from /healthcheck."""
    return {(i["role"], i["address"]): i["state"] for i in healthcheck(port)["instances"]}


class ReloadTests(unittest.TestCase):
    def setUp(self):
        self.procs = []
        self.p0 = self.own(start_mock(name="prefill-0", engine_id="prefill-0"))
        self.p1 = self.own(start_mock(name="prefill-1", engine_id="prefill-1"))
        self.d0 = self.own(start_mock(name="decode-0", engine_id="decode-0"))
        self.d1 = self.own(start_mock(name="decode-1", engine_id="decode-1"))

    def own(self, p):
        self.procs.append(p)
        return p

    def tearDown(self):
        for p in reversed(self.procs):
            p.stop()
            p.close_log()

    def toml(self, prefill, decode, extra=""):
        def addresses(mocks):
            return ", ".join(f'"127.0.0.1:{m.port}"' for m in mocks)
        return (f'host = "127.0.0.1"\nport = 0\n'
                f'prefill = [{addresses(prefill)}]\ndecode = [{addresses(decode)}]\n'
                'waiting-retry-interval = 0.2\n' + extra)

    def write(self, path, text):
        # Replaced in one rename, as editors and config managers do, so a HUP never reads half.
        tmp = path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)

    def start(self, args):
        p = self.own(Process("glm-proxy", [GLM_PROXY_BIN] + args, env=clean_env()))
        p.wait_listening()
        return p

    def config_file(self, text):
        d = tempfile.mkdtemp()
        path = os.path.join(d, "glm-proxy.toml")
        self.write(path, text)
        self.addCleanup(lambda: (os.path.exists(path) and os.unlink(path), os.rmdir(d)))
        return path

    def hup(self, proxy, expect_in_log):
        before = proxy.read_log().count(expect_in_log)
        proxy.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: proxy.read_log().count(expect_in_log) > before, 10,
                   message=f"no '{expect_in_log}' logged after SIGHUP",
                   describe=lambda: proxy.read_log()[-2000:])
        self.assertIsNone(proxy.proc.poll(), "glm-proxy exited on SIGHUP")

    def serve_one(self, proxy):
        status, _, body = post_json(proxy.port, COMPLETIONS, {"prompt": "hi", "max_tokens": 1})
        self.assertEqual(status, 200, body)

    def test_without_config_there_is_nothing_to_reload(self):
        proxy = self.start(["--host", "127.0.0.1", "--port", "0",
                            "--prefill", f"127.0.0.1:{self.p0.port}",
                            "--decode", f"127.0.0.1:{self.d0.port}", "--log-level", "ERROR"])
        for _ in range(3):
            self.hup(proxy, "nothing to reload")
        self.serve_one(proxy)
        self.assertEqual(proxy.stop(), 0)

    def test_instance_lists_follow_the_file(self):
        path = self.config_file(self.toml([self.p0], [self.d0]))
        proxy = self.start(["--config", path])
        port = proxy.port
        self.assertEqual(instances(port), {("prefill", f"127.0.0.1:{self.p0.port}"): "active",
                                           ("decode", f"127.0.0.1:{self.d0.port}"): "active"})

        # One prefiller more, the decoder swapped for another.
        self.write(path, self.toml([self.p0, self.p1], [self.d1]))
        self.hup(proxy, "SIGHUP: reloading")
        want = {("prefill", f"127.0.0.1:{self.p0.port}"): "active",
                ("prefill", f"127.0.0.1:{self.p1.port}"): "active",
                ("decode", f"127.0.0.1:{self.d1.port}"): "active"}
        wait_until(lambda: instances(port) == want, 15, message="the new lists were not applied",
                   describe=lambda: instances(port))
        log = proxy.read_log()
        self.assertIn(f"prefill instances ['127.0.0.1:{self.p1.port}'] are waiting to be added",
                      log)
        self.assertIn(f"decode instances ['127.0.0.1:{self.d0.port}'] are removed", log)
        decodes = mock_stats(self.d0.port)["decode"]
        for _ in range(4):
            self.serve_one(proxy)
        self.assertEqual(mock_stats(self.d0.port)["decode"], decodes, "a removed decoder served")
        self.assertEqual(mock_stats(self.d1.port)["decode"], 4)

        # Back to the start: the same path as /instances/remove takes p1 and d1 out again.
        self.write(path, self.toml([self.p0], [self.d0]))
        self.hup(proxy, "SIGHUP: reloading")
        want = {("prefill", f"127.0.0.1:{self.p0.port}"): "active",
                ("decode", f"127.0.0.1:{self.d0.port}"): "active"}
        wait_until(lambda: instances(port) == want, 15, message="the lists were not restored",
                   describe=lambda: instances(port))
        self.serve_one(proxy)
        self.assertEqual(proxy.stop(), 0)

    def test_log_level_changes_and_restart_settings_are_reported(self):
        path = self.config_file(self.toml([self.p0], [self.d0], 'log-level = "INFO"\n'))
        proxy = self.start(["--config", path])
        self.serve_one(proxy)
        wait_until(lambda: proxy.read_log().count("access client=") == 1, 10,
                   message="no access line at INFO")

        self.write(path, self.toml([self.p0], [self.d0],
                                   'log-level = "WARNING"\nmax-connections = 77\nmax-inflight = 7\n'
                                   'api-key = "sk-secret-value"\n'))
        # The restart report is the last line a reload writes; the log level line comes before it.
        self.hup(proxy, "need a restart to take effect")
        log = proxy.read_log()
        self.assertIn("SIGHUP: log level INFO -> WARNING", log)
        self.assertIn("need a restart to take effect: max-connections 10000 -> 77", log)
        self.assertIn("max-inflight 0 -> 7", log)
        self.assertIn("api-key", log)
        self.assertNotIn("sk-secret-value", log)
        # The running process keeps its settings: no API key is asked for.
        self.serve_one(proxy)
        self.assertEqual(proxy.read_log().count("access client="), 1,
                         "an access line was written at WARNING")

        self.write(path, self.toml([self.p0], [self.d0], 'log-level = "DEBUG"\n'))
        self.hup(proxy, "SIGHUP: log level WARNING -> DEBUG")
        self.serve_one(proxy)
        wait_until(lambda: proxy.read_log().count("access client=") == 2, 10,
                   message="access lines did not come back at DEBUG")
        self.assertEqual(proxy.stop(), 0)

    def test_bad_file_keeps_the_running_configuration(self):
        path = self.config_file(self.toml([self.p0], [self.d0]))
        proxy = self.start(["--config", path])
        before = instances(proxy.port)
        for text, fragment in [("port = \n", f"{path}:1: 'port' has no value"),
                               (self.toml([self.p1], [self.d1], "bogus = 1\n"),
                                "unknown key 'bogus'"),
                               (self.toml([self.p1], [self.d1], "max-retries = -5\n"),
                                "--max-retries")]:
            with self.subTest(text=text):
                self.write(path, text)
                self.hup(proxy, "not reloaded")
                self.assertIn(fragment, proxy.read_log())
                self.assertEqual(instances(proxy.port), before)
                self.serve_one(proxy)
        os.unlink(path)
        self.hup(proxy, "not reloaded")
        self.serve_one(proxy)
        self.assertEqual(proxy.stop(), 0)


if __name__ == "__main__":
    unittest.main()
