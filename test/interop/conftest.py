"""Helpers of the interoperability tests: real MQTT peers (Debian
mosquitto-clients, paho-mqtt) against the release listener example. Every
wait is bounded and on a condition (a line on a tool's stdout, a message in a
queue), never a fixed sleep."""

import itertools
import os
import queue
import shutil
import signal
import subprocess
import threading
import time

import pytest

TIMEOUT = 10.0
_ids = itertools.count()


def tool(name):
    """The path of a mosquitto-clients tool; the test fails (not skips) when
    it is missing."""
    path = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin")
    if path is None:
        pytest.fail(f"{name} is missing: install the Debian package mosquitto-clients")
    return path


class Tool:
    """A running mosquitto_sub / mosquitto_pub whose stdout lines are read
    by a thread into a queue."""

    def __init__(self, name, args, stdin=False):
        self.argv = [tool(name), *args]
        # The tools write through stdio, fully buffered into a pipe: stdbuf
        # (coreutils) makes their stdout line-buffered so lines can be
        # waited on as they come.
        stdbuf = shutil.which("stdbuf")
        if stdbuf is None:
            pytest.fail("stdbuf (coreutils) is missing")
        self.proc = subprocess.Popen(
            [stdbuf, "-oL", *self.argv],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for raw in self.proc.stdout:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def wait_line(self, pred, timeout=TIMEOUT, what="a line"):
        """The first line (from now) satisfying `pred`; fails after
        `timeout` or when the process ends first."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"{self.argv}: no {what} within {timeout} s; saw {self.seen}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.lines.put(None)
                pytest.fail(f"{self.argv} ended before {what}; output {self.seen}")
            self.seen.append(line)
            if pred(line):
                return line

    def messages(self, n, prefix="MSG|", timeout=TIMEOUT):
        """The next `n` message lines (those starting with `prefix`)."""
        return [self.wait_line(lambda s: s.startswith(prefix), timeout, "a message")[len(prefix):]
                for _ in range(n)]

    def wait_subscribed(self):
        """With -d, mosquitto_sub prints "received SUBACK" once subscribed."""
        self.wait_line(lambda s: "received SUBACK" in s, what="SUBACK")

    def wait_connected(self):
        self.wait_line(lambda s: "received CONNACK" in s, what="CONNACK")

    def finish(self, timeout=TIMEOUT):
        """Waits for the process to exit by itself; its exit status."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"{self.argv} did not exit within {timeout} s; output {self.seen}")

    def sigkill(self):
        """Kills the client abruptly: no DISCONNECT reaches the broker."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=TIMEOUT)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def tools():
    """Starts mosquitto tools; whatever is still running at the end of the
    test is killed."""
    started = []

    def start(name, *args, stdin=False):
        t = Tool(name, [str(a) for a in args], stdin=stdin)
        started.append(t)
        return t

    yield start
    for t in started:
        t.stop()


@pytest.fixture
def uid(request):
    return f"{request.node.name[:40]}-{os.getpid()}-{next(_ids)}".replace("[", "-").replace("]", "")


def run_pub(listener, *args):
    """Runs mosquitto_pub to completion; fails on a non-zero exit."""
    argv = [tool("mosquitto_pub"), "-h", listener.host, "-p", str(listener.port), *map(str, args)]
    r = subprocess.run(argv, capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 0, f"{argv}: exit {r.returncode}: {r.stdout!r} {r.stderr!r}"
    return r
