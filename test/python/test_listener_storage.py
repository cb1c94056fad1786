"""A Python listener with `ctx.storage_set_path`: retained messages and
persistent sessions survive a restart of the listener process (the PyMyQtt
manual's listener example, run unchanged, and the regression listener)."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
from typing import Iterator, List, Tuple

import pytest

import myqtt

TEST_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LISTENER = os.path.join(TEST_DIR, "myqtt-regression-listener.py")
HOST = "127.0.0.1"

# The manual's listener, steps 1 to 4 as printed ("Creating a MQTT server
# with Python"), with the names it leaves to the reader (info, error,
# some_limit_reached_for) defined, and the port 0 instead of 1883 so the
# test does not need a free well-known port; it prints the bound port.
MANUAL_LISTENER = textwrap.dedent(
    '''
    import sys
    import myqtt

    def info(m):
        print(m, file=sys.stderr, flush=True)

    def error(m):
        print(m, file=sys.stderr, flush=True)

    def some_limit_reached_for(conn):
        return False

    # create a context
    ctx = myqtt.Ctx ()

    # init context
    if not ctx.init ():
        error ("Unable to init ctx, failed to start listener")
        sys.exit(-1)

    # configure storage
    ctx.storage_set_path (".myqtt-listener", 4096)

    # create a listener
    info ("Starting listener at 0.0.0.0:1883")
    listener = myqtt.create_listener (ctx, "127.0.0.1", "0")

    # check listener started
    if not listener.is_ok ():
         error ("ERROR: failed to start listener. Maybe there is another instance running at 1883?")
         sys.exit (-1)

    def on_publish (ctx, conn, msg, data):
        info ("Topic received: %s" % (msg.topic))

        if msg.topic == "disard/this/topic":
            return myqtt.PUBLISH_DISCARD

        if some_limit_reached_for (conn):
            return myqtt.PUBLISH_DISCARD

        # for the rest of cases
        return myqtt.PUBLISH_OK

    # configure on publish
    ctx.set_on_publish (on_publish)

    print(listener.port, flush=True)

    # wait for requests
    myqtt.wait_listeners (ctx, unlock_on_signal=True)
    '''
)


class Process:
    """A listener program in a child process; `port` is what it printed."""

    def __init__(self, argv: List[str], cwd: str) -> None:
        self.p = subprocess.Popen(
            argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.p.stdout is not None
        line = self.p.stdout.readline().strip()
        if not line:
            _, err = self.p.communicate(timeout=30)
            pytest.fail(f"the listener did not start: {err}")
        self.port = int(line.rsplit(":", 1)[-1])

    def stop(self, how: str) -> None:
        if how == "kill":
            self.p.kill()
            self.p.wait(10)
        else:
            # SIGTERM unlocks wait_listeners: the program ends normally.
            self.p.send_signal(signal.SIGTERM)
            assert self.p.wait(10) == 0

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)


@pytest.fixture
def ctx() -> Iterator[myqtt.Ctx]:
    c = myqtt.Ctx()
    assert c.init()
    yield c
    c.exit()


def conn(ctx: myqtt.Ctx, port: int, client_id: str, clean: bool) -> myqtt.Conn:
    c = myqtt.Conn(ctx, HOST, port, client_id, clean, 30)
    assert c.is_ok(), c.error_msg
    return c


def next_msg(c: myqtt.Conn) -> Tuple[str, bytes, bool]:
    m = c.get_next(10000)
    assert m is not None, "no message within 10 s"
    return (m.topic, m.payload, m.retain)


@pytest.mark.parametrize("how", ["term", "kill"])
def test_the_manuals_listener_example_runs_unchanged_and_keeps_retained_messages(
    tmp_path, ctx: myqtt.Ctx, how: str
) -> None:
    script = tmp_path / "manual_listener.py"
    script.write_text(MANUAL_LISTENER)
    argv = [sys.executable, str(script)]
    listener = Process(argv, str(tmp_path))
    try:
        pub = conn(ctx, listener.port, "manual-pub", True)
        assert pub.pub("lamp/state", "on", myqtt.qos1, True, 10)
        # Discarded by the example's on_publish: never retained.
        assert pub.pub("disard/this/topic", "gone", myqtt.qos1, True, 10)
        pub.close()
        listener.stop(how)
        # The store is the example's relative path, in its working directory.
        assert (tmp_path / ".myqtt-listener").is_dir()
        listener = Process(argv, str(tmp_path))
        sub = conn(ctx, listener.port, "manual-sub", True)
        assert sub.sub("#", myqtt.qos1, 10)[0]
        assert next_msg(sub) == ("lamp/state", b"on", True)
        assert sub.get_next(300) is None
        sub.close()
    finally:
        listener.kill()


@pytest.mark.parametrize("how", ["term", "kill"])
def test_a_persistent_session_and_its_queued_messages_survive_a_listener_restart(
    tmp_path, ctx: myqtt.Ctx, how: str
) -> None:
    argv = [sys.executable, LISTENER, "--host", HOST, "--port", "0",
            "--storage", str(tmp_path / "store")]
    listener = Process(argv, str(tmp_path))
    try:
        # [MQTT-3.1.2-4] (3.1.1): clean session 0 keeps the session, its
        # subscriptions and the QoS 1 messages for it while it is away.
        sub = conn(ctx, listener.port, "durable-sub", False)
        assert sub.sub("queued/#", myqtt.qos1, 10) == (True, 1)
        sub.close()
        pub = conn(ctx, listener.port, "durable-pub", True)
        assert pub.pub("queued/1", "while away", myqtt.qos1, False, 10)
        pub.close()
        listener.stop(how)
        listener = Process(argv, str(tmp_path))
        sub = conn(ctx, listener.port, "durable-sub", False)
        assert sub.session_present
        assert next_msg(sub) == ("queued/1", b"while away", False)
        # The stored subscription routes new messages without a SUBSCRIBE.
        pub = conn(ctx, listener.port, "durable-pub", True)
        assert pub.pub("queued/2", "after the restart", myqtt.qos1, False, 10)
        assert next_msg(sub) == ("queued/2", b"after the restart", False)
        pub.close()
        sub.close()
    finally:
        listener.kill()


def test_storage_set_path_before_init_is_used_by_init(tmp_path) -> None:
    store = str(tmp_path / "store")
    for round_ in range(2):
        c = myqtt.Ctx()
        assert c.storage_set_path(store) is True
        assert c.init()
        listener = myqtt.create_listener(c, HOST, 0)
        assert listener.is_ok()
        client = conn(c, listener.port, "early", True)
        if round_ == 0:
            assert client.pub("kept", "1", myqtt.qos1, True, 10)
        else:
            assert client.sub("kept", myqtt.qos1, 10)[0]
            assert next_msg(client) == ("kept", b"1", True)
        client.close()
        c.exit()
        # The store is released once nothing of the context is left.
        del client, listener, c
        gc.collect()


def test_storage_set_path_after_a_connection_or_listener_is_refused_clearly(
    tmp_path, ctx: myqtt.Ctx
) -> None:
    listener = myqtt.create_listener(ctx, HOST, 0)
    assert listener.is_ok()
    with pytest.raises(myqtt.MyqttError, match="before any connection, listener"):
        ctx.storage_set_path(str(tmp_path / "store"))


def test_a_store_another_context_holds_is_refused_with_the_reason(tmp_path) -> None:
    store = str(tmp_path / "store")
    first = myqtt.Ctx()
    first.init()
    second = myqtt.Ctx()
    second.init()
    try:
        assert first.storage_set_path(store) is True
        with pytest.raises(myqtt.MyqttError, match="storage|store|lock"):
            second.storage_set_path(store)
        # The refused context still works, in memory.
        listener = myqtt.create_listener(second, HOST, 0)
        assert listener.is_ok()
    finally:
        first.exit()
        second.exit()
