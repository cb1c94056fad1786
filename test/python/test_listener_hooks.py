"""Listener-side handlers: on_publish verdicts and rewrites, on_connect
answers (deferred included), handler failures, coroutine handlers, and what
the `conn` a handler gets can tell and do. paho-mqtt is the client."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Iterator, List

import paho.mqtt.client as mqtt
import pytest

import myqtt
from listener_util import Broker, Client, broker_fixture, wait_for


@pytest.fixture
def broker() -> Iterator[Broker]:
    yield from broker_fixture()


def test_listener_on_port_zero_reports_the_bound_port_and_closes(broker: Broker) -> None:
    listener = myqtt.create_listener(broker.ctx, "127.0.0.1", "0")
    assert listener.is_ok()
    assert listener.port > 0
    assert listener.host == "127.0.0.1"
    assert listener.role == "master-listener"
    c = Client(listener.port, "port-zero")
    assert c.accepted
    c.close()
    listener.close()
    assert not listener.is_ok()


def test_a_busy_port_gives_a_listener_that_is_not_ok(broker: Broker) -> None:
    broker.start()
    second = myqtt.create_listener(broker.ctx, "127.0.0.1", broker.port)
    # SO_REUSEADDR does not allow two listeners on one port.
    assert not second.is_ok()
    assert second.error_msg and "cannot listen" in second.error_msg
    assert second.port == 0


def test_create_listener_needs_an_initialised_context() -> None:
    with pytest.raises(myqtt.MyqttError):
        myqtt.create_listener(myqtt.Ctx(), "127.0.0.1", 0)


def test_handlers_set_before_storage_set_path_keep_working_with_the_store(
    broker: Broker, tmp_path: Any
) -> None:
    seen: List[str] = []

    def on_publish(ctx: Any, conn: Any, msg: Any, data: Any) -> int:
        seen.append(msg.topic)
        return myqtt.PUBLISH_DISCARD if msg.topic == "drop" else myqtt.PUBLISH_OK

    broker.ctx.set_on_publish(on_publish)
    # The context's idle engine is replaced by one with the store; the
    # handler's hook moves to it.
    assert broker.ctx.storage_set_path(str(tmp_path / "store"), 4096) is True
    broker.start()
    sub = Client(broker.port, "sub")
    sub.subscribe("#", 1)
    pub = Client(broker.port, "pub")
    pub.publish("drop", b"x", qos=1)
    pub.publish("keep", b"y", qos=1)
    wait_for(lambda: sub.topics() == ["keep"], what="the kept message")
    assert seen == ["drop", "keep"]
    pub.close()
    sub.close()


def test_on_publish_sees_the_message_and_who_sent_it(broker: Broker) -> None:
    seen: List[Any] = []

    def on_publish(ctx: Any, conn: Any, msg: Any, data: Any) -> int:
        seen.append(
            (
                ctx is broker.ctx,
                conn.client_id,
                conn.username,
                conn.password,
                conn.host,
                conn.port > 0,
                conn.protocol,
                conn.tls,
                conn.role,
                conn.is_ok(),
                msg.topic,
                msg.payload,
                msg.content,
                msg.size,
                msg.qos,
                msg.retain,
                data,
            )
        )
        return myqtt.PUBLISH_OK

    broker.ctx.set_on_publish(on_publish, "my-data")
    broker.start()
    c = Client(broker.port, "who", username="user", password="pw")
    c.publish("a/b", b"hello", qos=1)
    wait_for(lambda: seen, what="on_publish")
    assert seen[0] == (
        True,
        "who",
        "user",
        "pw",
        "127.0.0.1",
        True,
        4,
        False,
        "listener",
        True,
        "a/b",
        b"hello",
        "hello",
        5,
        1,
        False,
        "my-data",
    )
    c.close()


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_a_discarded_publish_is_not_routed_but_its_flow_completes(
    broker: Broker, qos: int
) -> None:
    def on_publish(ctx: Any, conn: Any, msg: Any, data: Any) -> int:
        if msg.topic == "drop":
            return myqtt.PUBLISH_DISCARD
        return myqtt.PUBLISH_OK

    broker.ctx.set_on_publish(on_publish)
    broker.start()
    sub = Client(broker.port, "sub")
    sub.subscribe("#", 2)
    pub = Client(broker.port, "pub")
    # wait_for_publish returns: PUBACK / PUBCOMP came although it was dropped.
    pub.publish("drop", b"x", qos=qos)
    pub.publish("keep", b"y", qos=qos)
    wait_for(lambda: sub.topics() == ["keep"], what="the kept message")
    assert sub.topics() == ["keep"]
    pub.close()
    sub.close()


def test_publish_conn_close_closes_the_publisher(broker: Broker) -> None:
    broker.ctx.set_on_publish(lambda ctx, conn, msg, data: myqtt.PUBLISH_CONN_CLOSE)
    broker.start()
    c = Client(broker.port, "closing")
    c.c.publish("x", b"1", qos=1)
    wait_for(c.disconnected.is_set, what="the close")


def _mqtt_string(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def _packet(first: int, body: bytes) -> bytes:
    """An MQTT packet: fixed header (remaining length < 128 here) and body."""
    assert len(body) < 128
    return bytes([first, len(body)]) + body


def _raw_publish(topic: str, qos: int, packet_id: int) -> bytes:
    body = _mqtt_string(topic)
    if qos:
        body += packet_id.to_bytes(2, "big")
    return _packet(0x30 | (qos << 1), body + topic.encode())


def _raw_connect(port: int, client_id: str) -> socket.socket:
    """A raw MQTT 3.1.1 connection (clean session, keep alive 60), past its
    CONNACK (accepted)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    connect = _mqtt_string("MQTT") + bytes([4, 0x02]) + (60).to_bytes(2, "big")
    s.sendall(_packet(0x10, connect + _mqtt_string(client_id)))
    assert s.recv(4) == bytes([0x20, 2, 0, 0])
    return s


def test_a_burst_of_publish_packets_is_decided_in_order_and_a_close_stops_at_its_packet(
    broker: Broker,
) -> None:
    """PUBLISH packets that reach the listener in one read are decided
    together (one trip to the dispatch thread): the verdicts still apply in
    packet order, acknowledgements keep that order [MQTT-4.6.0-2], and
    PUBLISH_CONN_CLOSE ends the connection at its packet: the handler is
    not called for the packets behind it and none of them is routed."""
    seen: List[str] = []

    def on_publish(ctx: Any, conn: Any, msg: Any, data: Any) -> int:
        seen.append(msg.topic)
        if msg.topic.startswith("d/"):
            return myqtt.PUBLISH_DISCARD
        if msg.topic.startswith("c/"):
            return myqtt.PUBLISH_CONN_CLOSE
        if msg.topic.startswith("r/"):
            msg.topic = "new/" + msg.topic[2:]
        return myqtt.PUBLISH_OK

    broker.ctx.set_on_publish(on_publish)
    broker.start()
    sub = Client(broker.port, "sub")
    sub.subscribe("#", 1)
    s = _raw_connect(broker.port, "raw-burst")
    s.sendall(
        _raw_publish("ok/1", 1, 1)
        + _raw_publish("d/2", 1, 2)
        + _raw_publish("r/3", 0, 0)
        + _raw_publish("ok/4", 1, 4)
        + _raw_publish("c/5", 1, 5)
        + _raw_publish("ok/6", 1, 6)
    )
    got = b""
    while True:
        chunk = s.recv(1024)
        if not chunk:
            break
        got += chunk
    s.close()
    # PUBACK 1, 2 (discarded, flow completed) and 4, then the close.
    assert got == bytes([0x40, 2, 0, 1, 0x40, 2, 0, 2, 0x40, 2, 0, 4])
    assert seen == ["ok/1", "d/2", "r/3", "ok/4", "c/5"]
    wait_for(lambda: len(sub.topics()) == 3, what="the routed messages")
    assert sub.topics() == ["ok/1", "new/3", "ok/4"]
    sub.close()


@pytest.mark.parametrize("keeps", ["msg", "args"])
def test_msg_objects_kept_past_their_handler_still_read_as_their_messages(
    broker: Broker, keeps: str
) -> None:
    """The `msg` of a burst's message shares the engine's batch, and one
    the handler did not keep (nor the arguments holding it) is reused for
    the next message: a handler that keeps some (and changes one after its
    call) neither changes what was routed nor sees a kept `msg` change
    under it."""
    kept: List[Any] = []
    seen: List[str] = []

    def on_publish(*args: Any) -> int:
        msg = args[2]
        seen.append(msg.topic)
        if msg.topic.startswith("k/"):
            kept.append(msg if keeps == "msg" else args)
        if msg.topic == "k/2":
            msg.payload = b"rewritten"
        return myqtt.PUBLISH_OK

    broker.ctx.set_on_publish(on_publish)
    broker.start()
    sub = Client(broker.port, "keep-sub")
    sub.subscribe("#", 1)
    s = _raw_connect(broker.port, "raw-keep")
    topics = ["n/0", "k/1", "n/2", "n/3", "k/2", "n/5", "k/3"]
    s.sendall(b"".join(_raw_publish(t, 0, 0) for t in topics[:-1]) + _raw_publish("k/3", 1, 7))
    assert s.recv(4) == bytes([0x40, 2, 0, 7])
    s.close()
    assert seen == topics
    wait_for(lambda: len(sub.messages) == len(topics), what="the routed messages")
    assert [(m.topic, m.payload) for m in sub.messages] == [
        (t, b"rewritten" if t == "k/2" else t.encode()) for t in topics]
    if keeps == "args":
        kept = [args[2] for args in kept]
    # Changed after the handler returned: a copy, nothing routed changes.
    kept[0].payload = b"too late"
    assert [(m.topic, m.payload, m.qos) for m in kept] == [
        ("k/1", b"too late", 0), ("k/2", b"rewritten", 0), ("k/3", b"k/3", 1)]
    sub.close()


def test_the_listener_conn_gives_the_clients_socket_while_it_is_connected(
    broker: Broker,
) -> None:
    import os
    conns: List[Any] = []
    fds: List[Any] = []

    def on_connect(ctx: Any, conn: Any, data: Any) -> int:
        conns.append(conn)
        fd = conn.socket
        fds.append(fd)
        # The descriptor is this client's: its peer is the client's address.
        with socket.socket(fileno=os.dup(fd)) as s:
            fds.append(s.getpeername())
        return myqtt.CONNACK_ACCEPTED

    broker.ctx.set_on_connect(on_connect)
    broker.start()
    c = Client(broker.port, "fd-owner")
    assert isinstance(fds[0], int) and fds[0] >= 0
    assert fds[1] == c.c.socket().getsockname()
    c.close()
    wait_for(lambda: not conns[0].is_ok(), what="the connection to end")
    assert conns[0].socket is None


def test_changes_to_msg_rewrite_the_routed_message(broker: Broker) -> None:
    def on_publish(ctx: Any, conn: Any, msg: Any, data: Any) -> int:
        if msg.topic == "in":
            msg.topic = "out"
            msg.payload = "rewritten"
            msg.qos = 0
            msg.retain = True
        return myqtt.PUBLISH_OK

    broker.ctx.set_on_publish(on_publish)
    broker.start()
    pub = Client(broker.port, "rw-pub")
    pub.publish("in", b"original", qos=1)
    # retained under the new topic: a later subscriber gets it.
    sub = Client(broker.port, "rw-sub")
    sub.subscribe("#", 1)
    wait_for(lambda: sub.messages, what="the retained rewrite")
    m = sub.messages[0]
    assert (m.topic, m.payload, m.qos, m.retain) == ("out", b"rewritten", 0, True)
    pub.close()
    sub.close()


def test_on_publish_can_answer_through_conn_pub(broker: Broker) -> None:
    def on_publish(ctx: Any, conn: Any, msg: Any, data: Any) -> int:
        if msg.topic == "myqtt/admin/get-client-identifier":
            assert conn.pub("myqtt/admin/reply", conn.client_id, 1) is True
            return myqtt.PUBLISH_DISCARD
        return myqtt.PUBLISH_OK

    broker.ctx.set_on_publish(on_publish)
    broker.start()
    c = Client(broker.port, "asker")
    c.subscribe("myqtt/admin/reply", 1)
    c.publish("myqtt/admin/get-client-identifier", b"", qos=1)
    wait_for(lambda: c.messages, what="the reply")
    assert c.messages[0].payload == b"asker"
    c.close()


@pytest.mark.parametrize(
    "code, paho_value",
    [
        (myqtt.CONNACK_IDENTIFIER_REJECTED, "Client identifier not valid"),
        (myqtt.CONNACK_SERVER_UNAVAILABLE, "Server unavailable"),
        (myqtt.CONNACK_BAD_USERNAME_OR_PASSWORD, "Bad user name or password"),
        (myqtt.CONNACK_NOT_AUTHORIZED, "Not authorized"),
    ],
)
def test_on_connect_refusal_codes_reach_the_client(
    broker: Broker, code: int, paho_value: str
) -> None:
    broker.ctx.set_on_connect(lambda ctx, conn, data: code)
    broker.start()
    c = Client(broker.port, "refused")
    assert c.rc.is_failure
    # MQTT 3.1.1 §3.2.2.3 return codes 2..5, as paho names them.
    assert str(c.rc) == paho_value
    c.c.loop_stop()


def test_on_connect_checks_credentials(broker: Broker) -> None:
    def on_connect(ctx: Any, conn: Any, data: Any) -> int:
        assert conn.role == "listener" and conn.tls is False
        if conn.username == "aspl" and conn.password != "test":
            return myqtt.CONNACK_BAD_USERNAME_OR_PASSWORD
        return myqtt.CONNACK_ACCEPTED

    broker.ctx.set_on_connect(on_connect)
    broker.start()
    bad = Client(broker.port, "bad", username="aspl", password="wrong")
    assert bad.rc.is_failure and str(bad.rc) == "Bad user name or password"
    good = Client(broker.port, "good", username="aspl", password="test")
    assert good.accepted
    good.close()
    bad.c.loop_stop()


def test_a_deferred_connect_is_answered_later_from_another_thread(broker: Broker) -> None:
    pending: List[Any] = []

    def on_connect(ctx: Any, conn: Any, data: Any) -> int:
        pending.append(conn)
        return myqtt.CONNACK_DEFERRED

    broker.ctx.set_on_connect(on_connect)
    broker.start()
    accepted = Client(broker.port, "later-ok", wait=False)
    refused = Client(broker.port, "later-no", wait=False)
    wait_for(lambda: len(pending) == 2, what="both CONNECTs")
    assert not accepted.connack.is_set() and not refused.connack.is_set()
    by_id = {c.client_id: c for c in pending}

    def answer() -> None:
        assert by_id["later-ok"].send_connect_reply(myqtt.CONNACK_ACCEPTED)
        assert by_id["later-no"].send_connect_reply(myqtt.CONNACK_NOT_AUTHORIZED)

    t = threading.Thread(target=answer)
    t.start()
    t.join()
    wait_for(accepted.connack.is_set, what="the deferred CONNACK")
    wait_for(refused.connack.is_set, what="the deferred refusal")
    assert accepted.accepted
    assert refused.rc.is_failure and str(refused.rc) == "Not authorized"
    assert not by_id["later-ok"].send_connect_reply(myqtt.CONNACK_ACCEPTED), "answered once"
    accepted.close()
    refused.c.loop_stop()


def test_a_failing_on_publish_discards_and_logs(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    def on_publish(ctx: Any, conn: Any, msg: Any, data: Any) -> int:
        if msg.topic == "boom":
            raise RuntimeError("handler bug")
        return myqtt.PUBLISH_OK

    caplog.set_level(logging.ERROR, logger="myqtt")
    broker.ctx.set_on_publish(on_publish)
    broker.start()
    sub = Client(broker.port, "fs")
    sub.subscribe("#", 1)
    pub = Client(broker.port, "fp")
    pub.publish("boom", b"x", qos=1)
    pub.publish("fine", b"y", qos=1)
    wait_for(lambda: sub.topics() == ["fine"], what="the message after the failure")
    wait_for(
        lambda: any("on_publish" in r.getMessage() for r in caplog.records),
        what="the log record",
    )
    rec = next(r for r in caplog.records if "on_publish" in r.getMessage())
    assert rec.name == "myqtt" and "PUBLISH_DISCARD" in rec.getMessage()
    assert rec.exc_info and isinstance(rec.exc_info[1], RuntimeError)
    pub.close()
    sub.close()


def test_a_failing_on_connect_refuses_and_logs(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    def on_connect(ctx: Any, conn: Any, data: Any) -> int:
        raise ValueError("nope")

    caplog.set_level(logging.ERROR, logger="myqtt")
    broker.ctx.set_on_connect(on_connect)
    broker.start()
    c = Client(broker.port, "x")
    assert c.rc.is_failure
    wait_for(
        lambda: any("on_connect" in r.getMessage() for r in caplog.records),
        what="the log record",
    )
    c.c.loop_stop()


def test_a_bad_return_value_is_a_failure_too(broker: Broker) -> None:
    broker.ctx.set_on_publish(lambda ctx, conn, msg, data: "yes")
    broker.start()
    sub = Client(broker.port, "bs")
    sub.subscribe("#", 1)
    pub = Client(broker.port, "bp")
    pub.publish("t", b"x", qos=1)
    sub.subscribe("sync", 0)  # one more round trip through the same broker
    assert sub.messages == []
    pub.close()
    sub.close()


def test_coroutine_handlers_are_awaited(broker: Broker) -> None:
    async def on_connect(ctx: Any, conn: Any, data: Any) -> int:
        await asyncio.sleep(0.001)
        return myqtt.CONNACK_ACCEPTED if conn.client_id != "deny" else myqtt.CONNACK_NOT_AUTHORIZED

    async def on_publish(ctx: Any, conn: Any, msg: Any, data: Any) -> int:
        await asyncio.sleep(0.001)
        return myqtt.PUBLISH_DISCARD if msg.topic == "drop" else myqtt.PUBLISH_OK

    broker.ctx.set_on_connect(on_connect)
    broker.ctx.set_on_publish(on_publish)
    broker.start()
    denied = Client(broker.port, "deny")
    assert denied.rc.is_failure
    c = Client(broker.port, "aio")
    assert c.accepted
    c.subscribe("#", 1)
    c.publish("drop", b"1", qos=1)
    c.publish("keep", b"2", qos=1)
    wait_for(lambda: c.topics() == ["keep"], what="the kept message")
    c.close()
    denied.c.loop_stop()


def test_removing_a_handler_lets_everything_through(broker: Broker) -> None:
    broker.ctx.set_on_publish(lambda ctx, conn, msg, data: myqtt.PUBLISH_DISCARD)
    broker.start()
    broker.ctx.set_on_publish(None)
    c = Client(broker.port, "rm")
    c.subscribe("#", 1)
    c.publish("t", b"x", qos=1)
    wait_for(lambda: c.topics() == ["t"], what="the message")
    c.close()


def test_handler_must_be_callable(broker: Broker) -> None:
    with pytest.raises(TypeError):
        broker.ctx.set_on_publish(42)  # type: ignore[arg-type]


def test_conn_close_and_shutdown_from_a_handler(broker: Broker) -> None:
    def on_publish(ctx: Any, conn: Any, msg: Any, data: Any) -> int:
        if msg.topic == "close-me":
            conn.close()
        elif msg.topic == "shutdown-me":
            conn.shutdown()
        else:
            return myqtt.PUBLISH_OK  # wills pass through on_publish too
        return myqtt.PUBLISH_DISCARD

    broker.ctx.set_on_publish(on_publish)
    broker.start()
    watcher = Client(broker.port, "watcher")
    watcher.subscribe("will/#", 1)
    polite = Client(broker.port, "polite", will=("will/polite", b"gone", 1))
    rude = Client(broker.port, "rude", will=("will/rude", b"gone", 1))
    polite.c.publish("close-me", b"", qos=1)
    rude.c.publish("shutdown-me", b"", qos=1)
    wait_for(polite.disconnected.is_set, what="close()")
    wait_for(rude.disconnected.is_set, what="shutdown()")
    # shutdown() publishes the will; close() does not.
    wait_for(lambda: "will/rude" in watcher.topics(), what="the will")
    watcher.subscribe("sync", 0)
    assert "will/polite" not in watcher.topics()
    watcher.close()


def test_a_slow_handler_does_not_make_other_clients_miss_keep_alive(broker: Broker) -> None:
    done = threading.Event()

    def on_publish(ctx: Any, conn: Any, msg: Any, data: Any) -> int:
        if msg.topic == "slow":
            time.sleep(2.0)
            done.set()
        return myqtt.PUBLISH_OK

    broker.ctx.set_on_publish(on_publish)
    broker.start()
    slow = Client(broker.port, "slow-one")
    pinger = Client(broker.port, "pinger", keepalive=1)
    slow.c.publish("slow", b"", qos=1)
    wait_for(done.is_set, timeout=10, what="the slow handler")
    # Two keep-alive periods went by while the handler slept: the pinger is
    # still connected and still served.
    assert not pinger.disconnected.is_set()
    pinger.subscribe("after", 0)
    pinger.close()
    slow.close()


def test_coroutine_handlers_with_and_without_suspending(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    loops: List[Any] = []

    async def on_publish(ctx: Any, conn: Any, msg: Any, data: Any) -> int:
        if msg.topic == "quick":
            # Completes without suspending; a running loop is still there.
            loops.append(asyncio.get_running_loop())
            return myqtt.PUBLISH_OK
        if msg.topic == "yield":
            for _ in range(3):
                await asyncio.sleep(0)
            return myqtt.PUBLISH_OK
        if msg.topic == "future":
            fut = asyncio.get_running_loop().create_future()
            threading.Timer(0.01, lambda: fut.get_loop().call_soon_threadsafe(fut.set_result, 1)).start()
            await fut
            return myqtt.PUBLISH_OK
        await asyncio.sleep(0)
        raise RuntimeError("late failure")

    caplog.set_level(logging.ERROR, logger="myqtt")
    broker.ctx.set_on_publish(on_publish)
    broker.start()
    c = Client(broker.port, "aio2")
    c.subscribe("#", 1)
    for t in ("quick", "yield", "future", "late-failure", "quick"):
        c.publish(t, b"", qos=1)
    wait_for(lambda: c.topics() == ["quick", "yield", "future", "quick"], what="the messages")
    assert len(loops) == 2 and loops[0] is loops[1]
    wait_for(
        lambda: any("on_publish" in r.getMessage() for r in caplog.records), what="the log record"
    )
    c.close()


EXIT_WHILE_PUBLISHING = r"""
import threading, myqtt
ctx = myqtt.Ctx(); ctx.init()
seen = threading.Event()
calls = [0]
def on_publish(ctx, conn, msg, data):
    calls[0] += 1
    if calls[0] == 500:
        seen.set()
    return myqtt.PUBLISH_OK
ctx.set_on_publish(on_publish)
listener = myqtt.create_listener(ctx, "127.0.0.1", 0)
def publish():
    pub_ctx = myqtt.Ctx(); pub_ctx.init()
    conn = myqtt.Conn(pub_ctx, "127.0.0.1", listener.port, None, True, 60)
    while True:
        conn.pub("t", b"x" * 16, 0, False, 0)
threading.Thread(target=publish, daemon=True).start()
assert seen.wait(30)
print("exiting with", calls[0] > 0, flush=True)
"""


def test_the_interpreter_exits_while_publishes_reach_an_on_publish_handler() -> None:
    # The dispatch threads wait for jobs detached from the interpreter with
    # their thread state kept: at exit they must neither block the
    # interpreter's finalization nor touch it.
    out = subprocess.run(
        [sys.executable, "-c", EXIT_WHILE_PUBLISHING],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "exiting with True"
