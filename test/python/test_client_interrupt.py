"""Ctrl-C interrupts every blocking call: each releases the GIL and checks
for signals while it waits."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import myqtt
from conftest import HOST

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signals are handled on the main thread",
)


def interrupted(call) -> float:
    """Runs `call` while a timer thread sends SIGINT to this process after
    0.2 s; returns how long the call took to raise KeyboardInterrupt."""
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    start = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            call()
    finally:
        timer.join()
    return time.monotonic() - start


def test_get_next_is_interruptible(ctx, mosquitto):
    conn = myqtt.Conn(ctx, HOST, mosquitto.port, None, True, 30)
    assert conn.is_ok()
    assert interrupted(lambda: conn.get_next(30000)) < 2


def test_connecting_is_interruptible(ctx, fake_broker):
    b = fake_broker("silent")
    assert interrupted(lambda: myqtt.Conn(ctx, HOST, b.port, None, True, 30)) < 2


def test_waiting_for_a_puback_is_interruptible(ctx, fake_broker):
    b = fake_broker("accept")
    conn = myqtt.Conn(ctx, HOST, b.port, None, True, 30)
    assert conn.is_ok()
    assert interrupted(lambda: conn.pub("t", "x", 1, False, 30)) < 2


def test_waiting_for_a_suback_is_interruptible(ctx, fake_broker):
    b = fake_broker("accept")
    conn = myqtt.Conn(ctx, HOST, b.port, None, True, 30)
    assert interrupted(lambda: conn.sub("t", 1, 30)) < 2


def test_the_pythonic_waits_are_interruptible(fake_broker):
    b = fake_broker("accept")
    with myqtt.connect(HOST, b.port) as conn:
        assert interrupted(lambda: conn.publish("t", b"x", qos=1, timeout=None)) < 2
        assert interrupted(lambda: conn.get_message(timeout=None)) < 2
        assert interrupted(lambda: list(conn.messages())) < 2
