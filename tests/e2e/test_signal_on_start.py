"""A SIGTERM sent the moment glm-proxy prints "listening on" is a graceful shutdown (exit 0),
never death by the signal: supervisors and this harness treat that line as "ready".

Regression: the signal handler used to be installed only when run() started its coroutines, after
the line was printed; a SIGTERM in between killed the process (exit -15). TSan builds, whose
start-up is slow, hit it every time; the tight poll and --workers 4 (threads started in between)
make a normal build hit it about half the time.

Second regression: with Asio's signal handler, TSan builds lost about one such SIGTERM in a
hundred (the process slept on); glm-proxy now reads its signals from a signalfd."""

import signal
import time
import unittest

from harness import GLM_PROXY_BIN, LISTENING_RE, TIMEOUT_SCALE, Process, closed_ports

ATTEMPTS = 10


class SignalOnStartTests(unittest.TestCase):
    def start_and_signal(self, signum, first=None):
        prefill, decode = closed_ports(2)
        p = Process("glm-proxy", [GLM_PROXY_BIN, "--host", "127.0.0.1", "--port", "0",
                                  "--prefill", f"127.0.0.1:{prefill}",
                                  "--decode", f"127.0.0.1:{decode}", "--workers", "4"])
        try:
            deadline = time.monotonic() + 10 * TIMEOUT_SCALE
            # No sleep: signal as soon as the line is there.
            while not LISTENING_RE.search(p.read_log()):
                self.assertIsNone(p.proc.poll(), p.read_log())
                self.assertLess(time.monotonic(), deadline, p.read_log())
            if first is not None:
                p.proc.send_signal(first)
            p.proc.send_signal(signum)
            code = p.proc.wait(20 * TIMEOUT_SCALE)
            self.assertEqual(code, 0, f"exit {code} after {signum.name} at start\n{p.read_log()}")
            self.assertIn("stopped", p.read_log())
            return p.read_log()
        finally:
            p.stop()
            p.close_log()

    def test_sigterm_right_after_listening_exits_zero(self):
        for _ in range(ATTEMPTS):
            self.start_and_signal(signal.SIGTERM)

    def test_sigint_right_after_listening_exits_zero(self):
        for _ in range(ATTEMPTS):
            self.start_and_signal(signal.SIGINT)

    def test_sighup_right_after_listening_is_a_reload_then_sigterm_exits_zero(self):
        for _ in range(ATTEMPTS):
            log = self.start_and_signal(signal.SIGTERM, first=signal.SIGHUP)
            self.assertIn("SIGHUP: no --config file was given", log)


if __name__ == "__main__":
    unittest.main()
