"""Listener-side extras: ACL checks, events, periodic events, waiting for
listeners, kicks, the client list, broker-side publish and topic matching."""

from __future__ import annotations

import os
import signal
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


def test_acl_checks_subscribe_publish_and_delivery(broker: Broker) -> None:
    checks: List[Any] = []

    def acl(ctx: Any, conn: Any, access: int, topic: str, qos: int, payload: Any, data: Any) -> bool:
        checks.append((conn.client_id, access, topic, payload))
        if access == myqtt.ACL_SUBSCRIBE:
            return not topic.startswith("secret")
        if access == myqtt.ACL_PUBLISH:
            return topic != "forbidden"
        # ACL_DELIVER: "private" only reaches the client "boss".
        return topic != "private" or conn.client_id == "boss"

    broker.ctx.set_acl_check(acl, None)
    broker.start()
    worker = Client(broker.port, "worker")
    boss = Client(broker.port, "boss")
    # [MQTT-3.9.3-1] a refused filter gets the failure code 0x80.
    codes = worker.subscribe("secret/#", 1)
    assert codes[0].is_failure
    worker.subscribe("#", 1)
    boss.subscribe("#", 1)
    worker.publish("forbidden", b"no", qos=1)
    worker.publish("private", b"for the boss", qos=1)
    worker.publish("public", b"for all", qos=1)
    wait_for(lambda: "public" in worker.topics() and "public" in boss.topics(), what="public")
    assert boss.topics() == ["private", "public"]
    assert worker.topics() == ["public"]
    assert ("worker", myqtt.ACL_PUBLISH, "private", b"for the boss") in checks
    assert ("worker", myqtt.ACL_SUBSCRIBE, "secret/#", None) in checks
    assert any(c[1] == myqtt.ACL_DELIVER for c in checks)
    worker.close()
    boss.close()


def test_events_report_the_life_of_a_client(broker: Broker) -> None:
    events: List[Any] = []
    broker.ctx.set_on_event(lambda ctx, ev, data: events.append(ev))
    broker.start()
    c = Client(broker.port, "ev")
    c.subscribe("t/#", 1)
    c.publish("t/1", b"x", qos=1)
    wait_for(lambda: c.messages, what="the message")
    c.c.unsubscribe("t/#")
    wait_for(lambda: any(e.kind == "unsubscribed" for e in events), what="unsubscribed")
    c.close()
    wait_for(lambda: any(e.kind == "disconnected" for e in events), what="disconnected")
    kinds = [e.kind for e in events if e.client_id == "ev"]
    assert kinds == ["connected", "subscribed", "delivered", "unsubscribed", "disconnected"]
    sub = next(e for e in events if e.kind == "subscribed")
    assert (sub.topic, sub.qos, sub.conn.client_id) == ("t/#", 1, "ev")
    delivered = next(e for e in events if e.kind == "delivered")
    assert (delivered.topic, delivered.payload) == ("t/1", b"x")
    # A DISCONNECT from the client: reason 0 (MQTT 5 terms).
    assert next(e for e in events if e.kind == "disconnected").reason == 0


def test_dropped_messages_are_reported(broker: Broker) -> None:
    events: List[Any] = []
    broker.ctx.set_on_event(lambda ctx, ev, data: events.append(ev))
    broker.start()
    # A persistent session, offline: its QoS 1 queue is kept; kicking ends
    # nothing, so make the session end with messages queued instead.
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gone", clean_session=False)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    c.subscribe("q", 1)
    wait_for(lambda: any(e.kind == "subscribed" for e in events), what="subscribed")
    c.disconnect()
    c.loop_stop()
    wait_for(lambda: any(e.kind == "disconnected" for e in events), what="disconnected")
    pub = Client(broker.port, "p")
    pub.publish("q", b"queued", qos=1)
    # Clean session takes over and ends the old one with the message queued.
    fresh = Client(broker.port, "gone")
    wait_for(lambda: any(e.kind == "dropped" for e in events), what="dropped")
    d = next(e for e in events if e.kind == "dropped")
    assert (d.client_id, d.topic, d.drop_reason) == ("gone", "q", "session_ended")
    fresh.close()
    pub.close()


def test_periodic_event_runs_until_it_returns_true(broker: Broker) -> None:
    calls: List[Any] = []
    done = threading.Event()

    def tick(ctx: Any, a: Any, b: Any) -> bool:
        calls.append((ctx is broker.ctx, a, b))
        if len(calls) == 3:
            done.set()
            return True
        return False

    eid = broker.ctx.new_event(2_000, tick, "a", "b")
    assert isinstance(eid, int)
    wait_for(done.is_set, what="three ticks")
    assert calls == [(True, "a", "b")] * 3
    # It removed itself: remove_event finds nothing (once the task ended).
    wait_for(lambda: not broker.ctx.remove_event(eid), what="self-removal")


def test_remove_event_stops_a_periodic_event(broker: Broker) -> None:
    calls: List[int] = []
    eid = broker.ctx.new_event(1_000, lambda ctx, a, b: calls.append(1))
    wait_for(lambda: len(calls) >= 2, what="two ticks")
    assert broker.ctx.remove_event(eid) is True
    n = len(calls)
    # One more tick may have been queued; after that, none.
    stopped_at = n + 1
    seen = threading.Event()
    broker.ctx.new_event(20_000, lambda ctx, a, b: seen.set() or True)
    wait_for(seen.is_set, what="a later event")
    assert len(calls) <= stopped_at
    assert broker.ctx.remove_event(eid) is False


def test_wait_listeners_is_unlocked_from_another_thread(broker: Broker) -> None:
    broker.start()
    t = threading.Timer(0.05, myqtt.unlock_listeners, args=(broker.ctx,))
    t.start()
    started = time.monotonic()
    myqtt.wait_listeners(broker.ctx, unlock_on_signal=True)
    assert time.monotonic() - started < 5
    t.join()


def test_wait_listeners_is_unlocked_by_sigint(broker: Broker) -> None:
    broker.start()
    t = threading.Timer(0.05, os.kill, args=(os.getpid(), signal.SIGINT))
    t.start()
    myqtt.wait_listeners(broker.ctx, unlock_on_signal=True)
    t.join()


def test_wait_listeners_is_unlocked_by_sigterm_and_restores_the_handler(broker: Broker) -> None:
    broker.start()
    before = signal.getsignal(signal.SIGTERM)
    t = threading.Timer(0.05, os.kill, args=(os.getpid(), signal.SIGTERM))
    t.start()
    myqtt.wait_listeners(broker.ctx)
    t.join()
    assert signal.getsignal(signal.SIGTERM) is before


def test_without_unlock_on_signal_ctrl_c_raises(broker: Broker) -> None:
    broker.start()
    t = threading.Timer(0.05, os.kill, args=(os.getpid(), signal.SIGINT))
    t.start()
    with pytest.raises(KeyboardInterrupt):
        myqtt.wait_listeners(broker.ctx, unlock_on_signal=False)
    t.join()


def test_ctx_exit_releases_wait_listeners(broker: Broker) -> None:
    broker.start()
    t = threading.Timer(0.05, broker.ctx.exit)
    t.start()
    myqtt.wait_listeners(broker.ctx)
    t.join()


def test_kick_by_client_id_with_and_without_will(broker: Broker) -> None:
    broker.start()
    watcher = Client(broker.port, "watcher")
    watcher.subscribe("will/#", 1)
    a = Client(broker.port, "a", will=("will/a", b"a", 1))
    b = Client(broker.port, "b", will=("will/b", b"b", 1))
    assert broker.ctx.kick_client("a", with_will=False) is True
    assert broker.ctx.kick_client("b", with_will=True) is True
    assert broker.ctx.kick_client("nobody") is False
    wait_for(a.disconnected.is_set, what="a kicked")
    wait_for(b.disconnected.is_set, what="b kicked")
    wait_for(lambda: "will/b" in watcher.topics(), what="b's will")
    watcher.subscribe("sync", 0)
    assert "will/a" not in watcher.topics()
    watcher.close()


def test_kick_by_username(broker: Broker) -> None:
    broker.start()
    x = Client(broker.port, "x", username="bob", password="p")
    y = Client(broker.port, "y", username="bob", password="p")
    z = Client(broker.port, "z", username="alice", password="p")
    assert broker.ctx.kick_username("bob") == 2
    wait_for(lambda: x.disconnected.is_set() and y.disconnected.is_set(), what="bob kicked")
    assert not z.disconnected.is_set()
    z.close()


def test_clients_lists_connected_clients_with_subscriptions(broker: Broker) -> None:
    broker.start()
    c = Client(broker.port, "listed", username="u", password="p", protocol=mqtt.MQTTv5)
    c.subscribe("a/+", 1)
    clients = broker.ctx.clients()
    assert len(clients) == 1
    info = clients[0]
    assert info["client_id"] == "listed"
    assert info["username"] == "u"
    assert info["protocol"] == 5
    assert info["host"] == "127.0.0.1"
    assert info["tls"] is False
    assert info["subscriptions"] == [("a/+", 1)]
    c.close()
    wait_for(lambda: broker.ctx.clients() == [], what="the client to leave")


def test_broker_publish_reaches_subscribers_or_one_client(broker: Broker) -> None:
    broker.start()
    a = Client(broker.port, "pa")
    b = Client(broker.port, "pb")
    a.subscribe("news", 1)
    b.subscribe("news", 1)
    assert broker.ctx.broker_publish("news", "to all", 1, False, {"k": "v"}) == 2
    wait_for(lambda: a.messages and b.messages, what="both deliveries")
    assert broker.ctx.broker_publish("direct", b"only b", 1, client_id="pb") == 1
    wait_for(lambda: "direct" in b.topics(), what="the direct message")
    assert "direct" not in a.topics()
    assert broker.ctx.broker_publish("direct", b"x", 1, client_id="nobody") == 0
    with pytest.raises(ValueError):
        broker.ctx.broker_publish("bad/#", b"x")
    a.close()
    b.close()


def test_broker_publish_retained_reaches_later_subscribers(broker: Broker) -> None:
    broker.start()
    assert broker.ctx.broker_publish("state", b"on", 1, True) == 0
    c = Client(broker.port, "late")
    c.subscribe("state", 1)
    wait_for(lambda: c.messages, what="the retained message")
    assert (c.messages[0].payload, c.messages[0].retain) == (b"on", True)
    c.close()


@pytest.mark.parametrize(
    "sub, topic, expected",
    [
        ("/foo/#", "/foo/bar", True),
        ("foo/#", "foo", True),
        ("foo/+", "foo/bar", True),
        ("foo/+", "foo/bar/baz", False),
        ("+/+", "/finance", True),
        ("#", "$SYS/x", False),
        ("$SYS/#", "$SYS/x", True),
        ("a/b", "a/c", False),
    ],
)
def test_topic_matches_sub(sub: str, topic: str, expected: bool) -> None:
    # [MQTT-4.7.1-2] / [MQTT-4.7.2-1]
    assert myqtt.topic_matches_sub(sub, topic) is expected


def test_handlers_set_before_init_apply_to_the_listener() -> None:
    ctx = myqtt.Ctx()
    seen: List[str] = []
    events: List[str] = []
    ctx.set_on_publish(lambda c, conn, msg, d: seen.append(msg.topic) or myqtt.PUBLISH_OK)
    ctx.set_on_event(lambda c, ev, d: events.append(ev.kind))
    assert ctx.init()
    try:
        listener = myqtt.create_listener(ctx, "127.0.0.1", 0)
        assert listener.is_ok()
        c = Client(listener.port, "early")
        c.publish("t", b"x", qos=1)
        wait_for(lambda: seen == ["t"], what="on_publish")
        wait_for(lambda: "listener_started" in events, what="listener_started")
        c.close()
    finally:
        ctx.exit()


def test_exit_stops_periodic_events_and_drops_handlers(broker: Broker) -> None:
    calls: List[int] = []
    broker.ctx.new_event(1_000, lambda ctx, a, b: calls.append(1))
    broker.ctx.set_on_publish(lambda ctx, conn, msg, data: myqtt.PUBLISH_DISCARD)
    wait_for(lambda: calls, what="a tick")
    broker.ctx.exit()
    n = len(calls)
    # A fresh engine on the same Ctx: no handler, no event left over.
    assert broker.ctx.init()
    broker.start()
    c = Client(broker.port, "after-exit")
    c.subscribe("#", 1)
    c.publish("t", b"x", qos=1)
    wait_for(lambda: c.topics() == ["t"], what="the message, not discarded")
    assert len(calls) <= n + 1
    c.close()
