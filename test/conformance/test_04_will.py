"""Will messages (3.1.1 §3.1.2.5, 5.0 §3.1.2.5 and §3.1.3.2)."""

import time

import pytest

import mqttpkt as m
from mqttpkt import V311, V5


def _watch(client, uid, topic):
    w = client(V5)
    w.connect(uid + "-watch")
    w.subscribe(topic, qos=1)
    return w


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_04_will_published_on_abnormal_close(client, uid, version):
    # [MQTT-3.1.2-8] (3.1.1): the will is published when the network
    # connection closes without a DISCONNECT.
    topic = f"{uid}/will"
    watcher = _watch(client, uid, topic)
    c = client(version)
    c.connect(uid, will={"topic": topic, "payload": b"gone", "qos": 1})
    c.close()
    got = watcher.receive()
    assert (got.topic, got.payload, got.qos, got.retain) == (topic, b"gone", 1, False)


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_04_will_not_published_after_disconnect(client, uid, version):
    # [MQTT-3.1.2-10] (3.1.1) / [MQTT-3.14.4-3] (5.0, reason 0x00): after a
    # DISCONNECT the will is discarded.
    topic = f"{uid}/will"
    watcher = _watch(client, uid, topic)
    c = client(version)
    c.connect(uid, will={"topic": topic, "payload": b"gone", "qos": 1})
    c.disconnect()
    # A marker published after the DISCONNECT is the first thing seen.
    marker = client(V311)
    marker.connect(uid + "-m")
    marker.publish(topic, b"marker", qos=1)
    assert watcher.receive().payload == b"marker"


def test_04_will_v5_disconnect_with_will_message(client, uid):
    # MQTT 5.0 §3.14.2.1: DISCONNECT with reason 0x04 "Disconnect with Will
    # Message" asks the broker to publish the will.
    topic = f"{uid}/will"
    watcher = _watch(client, uid, topic)
    c = client(V5)
    c.connect(uid, will={"topic": topic, "payload": b"asked", "qos": 0})
    c.disconnect(reason=m.RC_DISCONNECT_WITH_WILL)
    assert watcher.receive().payload == b"asked"


def test_04_will_published_after_a_protocol_violation(client, uid):
    # [MQTT-3.1.2-8] (3.1.1): a close by the server for a protocol error
    # also publishes the will.
    topic = f"{uid}/will"
    watcher = _watch(client, uid, topic)
    c = client(V311)
    c.connect(uid, will={"topic": topic, "payload": b"broke", "qos": 1})
    c.send(m.connect(uid))  # a second CONNECT [MQTT-3.1.0-2]
    c.expect_closed()
    assert watcher.receive().payload == b"broke"


def test_04_will_retain_and_v5_properties(client, uid):
    # [MQTT-3.1.2-17] (3.1.1): a will with Will Retain 1 is published as a
    # retained message; MQTT 5.0 §3.1.3.2: the will properties (here a user
    # property, content type and response topic) go with it.
    topic = f"{uid}/will"
    c = client(V5)
    will_props = [
        (m.USER_PROPERTY, ("k", "v")),
        (m.CONTENT_TYPE, "text/plain"),
        (m.RESPONSE_TOPIC, f"{uid}/reply"),
    ]
    c.connect(uid, will={"topic": topic, "payload": b"kept", "qos": 1, "retain": True, "props": will_props})
    c.close()
    late = client(V5)
    late.connect(uid + "-late")
    late.subscribe(topic, qos=1)
    # The will may not have been routed yet when the SUBSCRIBE arrived;
    # either way it arrives, retained or live.
    got = late.receive()
    assert got.payload == b"kept"
    assert got.props.all(m.USER_PROPERTY) == [("k", "v")]
    assert got.props.get(m.CONTENT_TYPE) == "text/plain"
    assert got.props.get(m.RESPONSE_TOPIC) == f"{uid}/reply"
    # Once routed, the retained copy is there for the next subscriber.
    again = client(V5)
    again.connect(uid + "-again")
    again.subscribe(topic, qos=1)
    kept = again.receive()
    assert (kept.payload, kept.retain) == (b"kept", True)
    again.publish(topic, b"", retain=True)


def test_04_will_delay(client, uid):
    # [MQTT-3.1.3-9] (5.0): with a Will Delay Interval the will is sent when
    # the delay has passed, unless a new connection to the session is made
    # before; here two clients drop at once, one comes back.
    delay = 1
    topic = f"{uid}/will"
    watcher = _watch(client, uid, topic)
    props = [(m.SESSION_EXPIRY, 30)]
    wprops = [(m.WILL_DELAY, delay)]
    gone = client(V5)
    gone.connect(uid + "-gone", props=props, will={"topic": topic, "payload": b"gone", "qos": 1, "props": wprops})
    back = client(V5)
    back.connect(uid + "-back", props=props, will={"topic": topic, "payload": b"back", "qos": 1, "props": wprops})
    t0 = time.monotonic()
    gone.close()
    back.close()
    back = client(V5)
    assert back.connect(uid + "-back", clean=False, props=props).session_present
    got = watcher.receive(timeout=delay + 3)
    elapsed = time.monotonic() - t0
    assert got.payload == b"gone"
    assert elapsed >= delay - 0.05, f"will sent after {elapsed:.2f} s, before its {delay} s delay"
    # The returning client's will was cancelled: nothing else came by the
    # time the other one's had fired, nor shortly after.
    watcher.expect_nothing(0.3)
    back.disconnect()


def test_04_will_session_expiry_set_in_disconnect_after_0_is_a_protocol_error(client, uid):
    # [MQTT-3.14.2-2] (5.0): a non-zero Session Expiry Interval in the
    # client's DISCONNECT after 0 in its CONNECT is a Protocol Error: the
    # DISCONNECT is not valid, so the broker answers DISCONNECT 0x82, closes
    # the connection and, as for any close without a valid DISCONNECT,
    # publishes the will [MQTT-3.1.2-8].
    topic = f"{uid}/will"
    watcher = _watch(client, uid, topic)
    c = client(V5)
    c.connect(uid, will={"topic": topic, "payload": b"invalid disconnect", "qos": 1})
    c.send(m.disconnect(V5, reason=0, props=[(m.SESSION_EXPIRY, 30)]))
    got = c.expect_closed()
    assert [(p.type, p.reason) for p in got] == [(m.DISCONNECT, m.RC_PROTOCOL_ERROR)], got
    assert watcher.receive().payload == b"invalid disconnect"
    # And no session was kept.
    again = client(V5)
    assert not again.connect(uid, clean=False).session_present


def test_04_will_published_on_session_takeover(client, uid):
    # 5.0 §3.1.4: on a takeover the old connection closes (DISCONNECT 0x8E,
    # [MQTT-3.1.4-3]) and, with Will Delay 0, its will is published as for
    # any close without DISCONNECT.
    topic = f"{uid}/will"
    watcher = _watch(client, uid, topic)
    old = client(V5)
    old.connect(uid, will={"topic": topic, "payload": b"taken", "qos": 1})
    new = client(V5)
    new.connect(uid)
    assert [p.reason for p in old.expect_closed()] == [m.RC_SESSION_TAKEN_OVER]
    assert watcher.receive().payload == b"taken"


def test_04_will_delay_ends_with_the_session(client, uid):
    # [MQTT-3.1.3-9] (5.0): the will is published when the Will Delay
    # Interval passes or the session ends, whichever is first: Session
    # Expiry 0 sends it at once despite a 30 s delay; Session Expiry 1 sends
    # it after about 1 s.
    topic = f"{uid}/will"
    watcher = _watch(client, uid, topic)
    wprops = [(m.WILL_DELAY, 30)]
    now = client(V5)
    now.connect(uid + "-0", will={"topic": topic, "payload": b"expiry 0", "qos": 1, "props": wprops})
    later = client(V5)
    later.connect(uid + "-1", props=[(m.SESSION_EXPIRY, 1)],
                  will={"topic": topic, "payload": b"expiry 1", "qos": 1, "props": wprops})
    t0 = time.monotonic()
    now.close()
    later.close()
    first = watcher.receive(timeout=5)
    t1 = time.monotonic() - t0
    second = watcher.receive(timeout=5)
    t2 = time.monotonic() - t0
    assert (first.payload, second.payload) == (b"expiry 0", b"expiry 1")
    assert t1 < 0.9, f"the expiry-0 will took {t1:.2f} s"
    assert 0.95 <= t2 <= 3.0, f"the expiry-1 will came after {t2:.2f} s"


def test_04_will_delay_then_a_clean_start_publishes_it(client, uid):
    # [MQTT-3.1.3-9] (5.0): only a new connection to the same session
    # cancels a delayed will; one with Clean Start 1 ends that session, so
    # the will is published at once.
    topic = f"{uid}/will"
    watcher = _watch(client, uid, topic)
    c = client(V5)
    c.connect(uid, props=[(m.SESSION_EXPIRY, 60)],
              will={"topic": topic, "payload": b"ended", "qos": 1, "props": [(m.WILL_DELAY, 30)]})
    c.close()
    fresh = client(V5)
    assert not fresh.connect(uid, clean=True).session_present
    assert watcher.receive(timeout=3).payload == b"ended"
