"""PUBLISH and the QoS 0/1/2 flows in both directions (3.1.1 §3.3-3.7 and
§4.3-4.6, 5.0 likewise), including redelivery and duplicate suppression."""

import pytest

import mqttpkt as m
from mqttpkt import V311, V5


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_02_publish_qos_flow_to_a_subscriber(client, uid, version, qos):
    # [MQTT-4.3.1-1], [MQTT-4.3.2-2], [MQTT-4.3.3-2] (3.1.1): the broker
    # acknowledges the publisher's flow with its packet id, and delivers to a
    # QoS 2 subscriber at the publish QoS with a non-zero packet id
    # [MQTT-2.3.1-1] and DUP 0 on a first delivery [MQTT-3.3.1-2].
    sub = client(version)
    sub.connect(uid + "-s")
    assert sub.subscribe(f"{uid}/t", qos=2) == [2]
    pub = client(version)
    pub.connect(uid + "-p")
    pid = 0x1234
    pub.send(m.publish(f"{uid}/t", b"payload", qos, pid=pid if qos else None, version=version))
    if qos == 1:
        a = pub.expect(m.PUBACK)
        assert (a.pid, a.reason) == (pid, 0)
    elif qos == 2:
        rec = pub.expect(m.PUBREC)
        assert (rec.pid, rec.reason) == (pid, 0)
        pub.send(m.ack(m.PUBREL, pid, version))
        comp = pub.expect(m.PUBCOMP)
        assert comp.pid == pid
    got = sub.receive()
    assert (got.topic, got.payload, got.qos, got.retain, got.dup) == (f"{uid}/t", b"payload", qos, False, False)
    if qos:
        assert got.pid and 1 <= got.pid <= 65535
    else:
        assert got.pid is None


@pytest.mark.parametrize("granted", [0, 1])
def test_02_publish_delivered_at_the_granted_qos(client, uid, granted):
    # [MQTT-3.8.4-6] / §3.8.4 (3.1.1): the message goes out at the lower of
    # its QoS and the subscription's granted QoS.
    sub = client(V311)
    sub.connect(uid + "-s")
    assert sub.subscribe(f"{uid}/t", qos=granted) == [granted]
    pub = client(V311)
    pub.connect(uid + "-p")
    pub.publish(f"{uid}/t", b"x", qos=2)
    assert sub.receive().qos == granted


def test_02_publish_order_kept_per_publisher(client, uid):
    # [MQTT-4.6.0-5] (3.1.1 §4.6): messages from one publisher on one topic
    # reach a subscriber in the order they were published, whatever the QoS.
    sub = client(V311)
    sub.connect(uid + "-s")
    sub.subscribe(f"{uid}/t", qos=2)
    pub = client(V311)
    pub.connect(uid + "-p")
    n = 30
    for i in range(n):
        qos = i % 3
        pub.send(m.publish(f"{uid}/t", str(i).encode(), qos, pid=i + 1 if qos else None))
    payloads = [sub.receive().payload for _ in range(n)]
    assert payloads == [str(i).encode() for i in range(n)]


def test_02_publish_qos2_duplicate_suppression(client, uid):
    # [MQTT-4.3.3-2] (3.1.1) / [MQTT-4.3.3-9] (5.0): until PUBREL, a PUBLISH
    # with the same packet id is answered with PUBREC again but not delivered
    # again to onward recipients.
    sub = client(V311)
    sub.connect(uid + "-s")
    sub.subscribe(f"{uid}/t", qos=2)
    pub = client(V311)
    pub.connect(uid + "-p")
    pid = 7
    pub.send(m.publish(f"{uid}/t", b"once", 2, pid=pid))
    assert pub.expect(m.PUBREC).pid == pid
    pub.send(m.publish(f"{uid}/t", b"once", 2, pid=pid, dup=True))
    assert pub.expect(m.PUBREC).pid == pid
    pub.send(m.ack(m.PUBREL, pid))
    assert pub.expect(m.PUBCOMP).pid == pid
    # After PUBCOMP the id is free: the same id carries a new message
    # [MQTT-4.3.3-2].
    pub.send(m.publish(f"{uid}/t", b"second", 2, pid=pid))
    assert pub.expect(m.PUBREC).pid == pid
    pub.send(m.ack(m.PUBREL, pid))
    assert pub.expect(m.PUBCOMP).pid == pid
    assert sub.receive().payload == b"once"
    assert sub.receive().payload == b"second"
    sub.expect_nothing()


def test_02_publish_qos1_unacknowledged_redelivered_with_dup_on_reconnect(client, uid):
    # [MQTT-4.4.0-1] / [MQTT-3.3.1-1] (3.1.1): a QoS 1 message not
    # acknowledged before the connection dropped is sent again, with DUP 1
    # and the same packet id, when the persistent session resumes.
    sub = client(V311)
    sub.connect(uid + "-s", clean=False)
    sub.subscribe(f"{uid}/t", qos=1)
    pub = client(V311)
    pub.connect(uid + "-p")
    pub.publish(f"{uid}/t", b"again", qos=1)
    first = sub.expect(m.PUBLISH)
    assert (first.qos, first.dup) == (1, False)
    sub.close()  # no PUBACK
    sub = client(V311)
    assert sub.connect(uid + "-s", clean=False).session_present
    again = sub.expect(m.PUBLISH)
    assert (again.pid, again.dup, again.payload) == (first.pid, True, b"again")
    sub.send(m.ack(m.PUBACK, again.pid))
    sub.ping()  # the ack was taken: nothing else comes before PINGRESP


def test_02_publish_qos2_pubrel_resent_on_reconnect(client, uid):
    # [MQTT-4.4.0-1] (3.1.1): a QoS 2 delivery that reached PUBREC is resumed
    # with PUBREL (not the PUBLISH again) on reconnect.
    sub = client(V311)
    sub.connect(uid + "-s", clean=False)
    sub.subscribe(f"{uid}/t", qos=2)
    pub = client(V311)
    pub.connect(uid + "-p")
    pub.publish(f"{uid}/t", b"two", qos=2)
    p = sub.expect(m.PUBLISH)
    sub.send(m.ack(m.PUBREC, p.pid))
    rel = sub.expect(m.PUBREL)
    assert rel.pid == p.pid
    sub.close()  # no PUBCOMP
    sub = client(V311)
    assert sub.connect(uid + "-s", clean=False).session_present
    rel = sub.expect(m.PUBREL)
    assert rel.pid == p.pid
    sub.send(m.ack(m.PUBCOMP, rel.pid))
    sub.ping()


def test_02_publish_offline_messages_queued_for_a_persistent_session(client, uid):
    # [MQTT-3.1.2-5] (3.1.1): QoS 1 and 2 messages matching a disconnected
    # persistent session's subscriptions are stored and delivered when it
    # returns; QoS 0 ones may be.
    sub = client(V311)
    sub.connect(uid + "-s", clean=False)
    sub.subscribe(f"{uid}/t", qos=2)
    sub.disconnect()
    pub = client(V311)
    pub.connect(uid + "-p")
    for i, qos in enumerate((1, 2, 1)):
        pub.publish(f"{uid}/t", f"m{i}".encode(), qos=qos)
    sub = client(V311)
    assert sub.connect(uid + "-s", clean=False).session_present
    got = [sub.receive() for _ in range(3)]
    assert [(p.payload, p.qos) for p in got] == [(b"m0", 1), (b"m1", 2), (b"m2", 1)]


def test_02_publish_to_a_wildcard_topic(client, uid):
    # [MQTT-3.3.2-2]: the topic name of a PUBLISH must not contain wildcard
    # characters; the broker closes the connection (5.0: DISCONNECT 0x90
    # Topic Name invalid) and routes nothing.
    watcher = client(V311)
    watcher.connect(uid + "-w")
    watcher.subscribe("#")
    for version, topic in ((V311, f"{uid}/+"), (V5, f"{uid}/#")):
        c = client(version)
        c.connect(f"{uid}-{version}")
        c.send(m.publish(topic, b"bad", version=version))
        got = c.expect_closed()
        if version == V5:
            assert [(p.type, p.reason) for p in got] == [(m.DISCONNECT, m.RC_TOPIC_NAME_INVALID)], got
        else:
            assert got == []
    watcher.send(m.publish(f"{uid}/marker", b"m"))
    # The marker is the first thing the watcher sees: nothing was routed.
    p = watcher.receive()
    assert p.topic == f"{uid}/marker"


def test_02_publish_v5_no_matching_subscribers_reason(client, uid):
    # MQTT 5.0 §3.4.2.1: PUBACK 0x10 No matching subscribers when nobody
    # subscribed; the flow completes all the same.
    c = client(V5)
    c.connect(uid)
    assert c.publish(f"{uid}/nobody", b"x", qos=1) == m.RC_NO_MATCHING_SUBSCRIBERS
    assert c.publish(f"{uid}/nobody", b"x", qos=2) == m.RC_NO_MATCHING_SUBSCRIBERS


def test_02_publish_packets_split_byte_by_byte(client, uid):
    # §2.2.3 / §4.2: a packet may arrive in any number of TCP segments; the
    # broker reassembles CONNECT, SUBSCRIBE and PUBLISH sent one byte at a
    # time, and packets sent right after CONNECT, before CONNACK, are
    # processed in order (3.1.1 §3.1.4 non-normative: clients need not wait).
    c = client(V311)
    data = m.connect(uid) + m.subscribe(1, [(f"{uid}/t", 1)]) + m.publish(f"{uid}/t", b"bytes", 1, pid=2)
    for b in data:
        c.send(bytes([b]))
    assert c.expect(m.CONNACK).reason == 0
    assert c.expect(m.SUBACK).codes == [1]
    # PUBACK and the delivery to ourselves, in either order.
    got = sorted((c.recv(), c.recv()), key=lambda p: p.type)
    assert [p.type for p in got] == [m.PUBLISH, m.PUBACK]
    assert got[0].payload == b"bytes" and got[1].pid == 2


def test_02_publish_many_packets_in_one_write(client, uid):
    # The broker takes every packet of one TCP write, not only the first.
    sub = client(V311)
    sub.connect(uid + "-s")
    sub.subscribe(f"{uid}/t", qos=1)
    pub = client(V311)
    pub.connect(uid + "-p")
    n = 200
    pub.send(b"".join(m.publish(f"{uid}/t", str(i).encode(), 1, pid=i + 1) for i in range(n)))
    assert sorted(pub.expect(m.PUBACK).pid for _ in range(n)) == list(range(1, n + 1))
    assert [sub.receive().payload for _ in range(n)] == [str(i).encode() for i in range(n)]


def test_02_publish_large_payload(client, uid):
    # A 2 MiB payload (remaining length in 4 bytes, §2.2.3) goes through
    # unchanged at QoS 1.
    sub = client(V311, timeout=10)
    sub.connect(uid + "-s")
    sub.subscribe(f"{uid}/t", qos=1)
    pub = client(V311, timeout=10)
    pub.connect(uid + "-p")
    payload = bytes(range(256)) * 8192
    pub.publish(f"{uid}/t", payload, qos=1)
    assert sub.receive().payload == payload


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_02_publish_pubrel_for_an_unknown_packet_id(client, uid, version):
    # [MQTT-4.3.3-2] (3.1.1) / 5.0 §3.7.2.1: a PUBREL is always answered with
    # PUBCOMP carrying its packet id; at MQTT 5 with 0x92 Packet Identifier
    # not found when no flow has that id. The connection stays up.
    c = client(version)
    c.connect(uid)
    c.send(m.ack(m.PUBREL, 99, version))
    comp = c.expect(m.PUBCOMP)
    assert comp.pid == 99
    assert comp.reason == (0x92 if version == V5 else 0)
    c.ping()


def test_02_publish_unexpected_puback_is_ignored(client, uid):
    # A PUBACK for no flow of the broker's is not a protocol error (it may
    # be a late duplicate); the connection keeps working.
    c = client(V5)
    c.connect(uid)
    c.send(m.ack(m.PUBACK, 5, V5))
    c.ping()
