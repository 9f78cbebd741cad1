"""The harness's own contracts that sanitizer runs rely on: $GLM_PROXY_EXTRA_ARGS reaches a
glm-proxy without overriding what a test sets, and a sanitizer report in a process's log (or a
sanitizer exit code) fails the test that stops the process."""

import os
import subprocess
import sys
import unittest
from unittest import mock

import harness
from harness import GLM_PROXY_BIN, Process, SanitizerError

ASAN_REPORT = ("=================================================================\n"
               "==4242==ERROR: AddressSanitizer: heap-use-after-free on address 0x6020 at pc 0x1\n"
               "READ of size 8 at 0x6020 thread T0\n"
               "    #0 0x55 in glm::proxy::f() proxy/f.cpp:12\n")


class ExtraArgsTests(unittest.TestCase):
    def extra(self, value, argv, env=None):
        with mock.patch.dict(os.environ, {"GLM_PROXY_EXTRA_ARGS": value}):
            return harness._proxy_extra_args([GLM_PROXY_BIN] + argv, env or {})

    def test_appends_flag_groups(self):
        self.assertEqual(self.extra("--workers 2 --log-level DEBUG", ["--port", "0"]),
                         ["--workers", "2", "--log-level", "DEBUG"])

    def test_a_flag_the_test_passes_wins(self):
        self.assertEqual(self.extra("--workers 2 --log-level DEBUG", ["--workers", "1"]),
                         ["--log-level", "DEBUG"])
        self.assertEqual(self.extra("--workers=2", ["--workers=3"]), [])

    def test_a_flag_the_test_sets_in_the_environment_wins(self):
        self.assertEqual(self.extra("--workers 2", [], env={"GLM_PROXY_WORKERS": "3"}), [])

    def test_only_glm_proxy_gets_them(self):
        with mock.patch.dict(os.environ, {"GLM_PROXY_EXTRA_ARGS": "--workers 2"}):
            p = Process("not-the-proxy", [sys.executable, "-c", "pass"])
        try:
            self.assertEqual(p.argv, [sys.executable, "-c", "pass"])
        finally:
            p.stop()
            p.close_log()


class SanitizerReportTests(unittest.TestCase):
    def spawn(self, script):
        p = Process("fake", [sys.executable, "-c", script])
        self.addCleanup(p.close_log)
        return p

    def expect_report(self, p):
        before = len(harness._sanitizer_reports)
        with self.assertRaises(SanitizerError) as ctx:
            p.stop()
        # This test's report is expected: keep it from failing the run at exit.
        self.assertEqual(len(harness._sanitizer_reports), before + 1)
        del harness._sanitizer_reports[before:]
        return str(ctx.exception)

    def test_report_in_the_log_fails_stop_once(self):
        p = self.spawn(f"import sys, time; sys.stdout.write({ASAN_REPORT!r}); sys.stdout.flush(); "
                       "time.sleep(60)")
        harness.wait_until(lambda: "AddressSanitizer" in p.read_log(), 10)
        message = self.expect_report(p)
        self.assertIn("heap-use-after-free", message)
        self.assertIn("proxy/f.cpp:12", message)
        p.stop()  # reported once

    def test_ubsan_and_tsan_reports(self):
        for text in ("proxy/a.cpp:3:5: runtime error: signed integer overflow\n",
                     "WARNING: ThreadSanitizer: data race (pid=1)\n"):
            p = self.spawn(f"import sys; sys.stdout.write({text!r})")
            p.proc.wait(10)
            self.assertIn(text.strip(), self.expect_report(p))

    def test_sanitizer_exit_code_without_report(self):
        with mock.patch.object(harness, "SANITIZER_EXIT_CODES", {86}):
            p = self.spawn("import sys; print('bye'); sys.exit(86)")
            p.proc.wait(10)
            self.assertIn("exit code 86", self.expect_report(p))

    def test_a_swallowed_report_still_fails_the_run(self):
        # A cleanup that catches every exception, as some tests' own do.
        inner = f"print({ASAN_REPORT!r})"
        script = ("import harness, subprocess, sys\n"
                  f"p = harness.Process('fake', [sys.executable, '-c', {inner!r}])\n"
                  "p.proc.wait(10)\n"
                  "try:\n    p.stop()\nexcept Exception:\n    pass\n"
                  "p.close_log()\n"
                  "sys.exit(0)\n")
        r = subprocess.run([sys.executable, "-c", script], cwd=os.path.dirname(harness.__file__),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = r.stdout.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 1, out)
        self.assertIn("sanitizer report(s): failing the run", out)

    def test_clean_process_passes(self):
        p = self.spawn("print('listening on 127.0.0.1:1')")
        p.proc.wait(10)
        self.assertEqual(p.stop(), 0)


if __name__ == "__main__":
    unittest.main()
