"""Shared pytest configuration for the Python test suites.

`myqtt_listener` starts the release listener example
(`target/release/examples/listener`, built beforehand by
`cargo build --release --examples -p myqtt-core`) on a free loopback port
for the whole session; `start_listener` starts one with extra arguments.
"""

import os
import select
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LISTENER = ROOT / "target" / "release" / "examples" / "listener"


class ListenerProcess:
    """A running listener example: its process and the address it bound."""

    def __init__(self, *args):
        if not LISTENER.exists():
            pytest.fail(
                f"{LISTENER} is missing: build it first with "
                "`cargo build --release --examples -p myqtt-core`"
            )
        self.proc = subprocess.Popen(
            [str(LISTENER), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self._first_line(timeout=10.0)
        prefix = "listening on "
        if not line.startswith(prefix):
            self.stop()
            pytest.fail(f"the listener printed {line!r} instead of 'listening on HOST:PORT'")
        host, _, port = line[len(prefix):].strip().rpartition(":")
        self.host, self.port = host, int(port)
        self.addr = (host, self.port)

    def _first_line(self, timeout):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if ready:
                return fd.readline()
            if self.proc.poll() is not None:
                break
        self.stop()
        pytest.fail(f"the listener did not report its port within {timeout} s")

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


@pytest.fixture(scope="session")
def myqtt_listener():
    """The release listener example on 127.0.0.1 and a free port."""
    listener = ListenerProcess()
    yield listener
    running = listener.alive()
    listener.stop()
    assert running, "the listener process died during the tests"


@pytest.fixture(scope="session")
def start_listener():
    """Starts further listeners with extra command-line arguments; all are
    stopped at the end of the session."""
    started = []

    def start(*args):
        listener = ListenerProcess(*args)
        started.append(listener)
        return listener

    yield start
    for listener in started:
        listener.stop()


def pytest_report_header(config):
    return f"myqtt listener binary: {LISTENER} (exists: {os.path.exists(LISTENER)})"
