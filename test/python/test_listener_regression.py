"""The regression listener and client programs, run as a pair."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

TEST_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LISTENER = os.path.join(TEST_DIR, "myqtt-regression-listener.py")
CLIENT = os.path.join(TEST_DIR, "myqtt-regression-client.py")


def start_listener(*extra: str) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, LISTENER, "--host", "127.0.0.1", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("storage", [False, True])
def test_the_regression_client_passes_against_the_regression_listener(
    storage: bool, tmp_path
) -> None:
    # With --storage, the same suite runs on the stored path (every QoS 1/2
    # PUBLISH acknowledged after its commit) with the handlers.
    listener = start_listener(*(["--storage", str(tmp_path / "store")] if storage else []))
    try:
        assert listener.stdout is not None
        line = listener.stdout.readline().strip()
        assert line.startswith("listening on 127.0.0.1:"), line
        port = line.rsplit(":", 1)[1]
        assert int(port) > 0
        client = subprocess.run(
            [sys.executable, CLIENT, "--host", "127.0.0.1", "--port", port],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert client.returncode == 0, client.stdout + client.stderr
        lines = client.stdout.splitlines()
        ok = [l for l in lines if l.startswith("Test ") and l.endswith(" OK")]
        assert len(ok) == 11, client.stdout
        assert ok[0].startswith("Test 01:") and ok[-1].startswith("Test 11:")
        # SIGTERM unlocks wait_listeners: the listener exits cleanly.
        listener.send_signal(signal.SIGTERM)
        assert listener.wait(10) == 0
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()


def test_the_regression_client_fails_without_a_listener() -> None:
    # Port 1 on loopback: nothing listens there.
    client = subprocess.run(
        [sys.executable, CLIENT, "--host", "127.0.0.1", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert client.returncode != 0
    assert "FAILED" in client.stdout
