"""MQTT 5.0 features: properties forwarded, message expiry, topic aliases,
receive maximum and maximum packet size (5.0 §3.1.2.11, §3.2.2.3, §3.3.2.3,
§4.9)."""

import time

import mqttpkt as m
from mqttpkt import V311, V5


def test_07_v5_user_and_application_properties_forwarded(client, uid):
    # [MQTT-3.3.2-17] / [MQTT-3.3.2-18]: user properties are forwarded
    # unaltered and in order (repeated names kept); [MQTT-3.3.2-4]: payload
    # format indicator; [MQTT-3.3.2-20]: content type; [MQTT-3.3.2-15] /
    # [MQTT-3.3.2-16]: response topic and correlation data, all unchanged.
    sub = client(V5)
    sub.connect(uid + "-s")
    sub.subscribe(f"{uid}/t", qos=1)
    pub = client(V5)
    pub.connect(uid + "-p")
    user = [("b", "2"), ("a", "1"), ("b", "1"), ("é", "ü")]
    props = [(m.USER_PROPERTY, kv) for kv in user] + [
        (m.PAYLOAD_FORMAT, 1),
        (m.CONTENT_TYPE, "application/json"),
        (m.RESPONSE_TOPIC, f"{uid}/reply"),
        (m.CORRELATION_DATA, b"\x00\x01\xff"),
    ]
    pub.publish(f"{uid}/t", b'{"k": 1}', qos=1, props=props)
    got = sub.receive()
    assert got.props.all(m.USER_PROPERTY) == user
    assert got.props.get(m.PAYLOAD_FORMAT) == 1
    assert got.props.get(m.CONTENT_TYPE) == "application/json"
    assert got.props.get(m.RESPONSE_TOPIC) == f"{uid}/reply"
    assert got.props.get(m.CORRELATION_DATA) == b"\x00\x01\xff"
    assert got.payload == b'{"k": 1}'


def test_07_v5_properties_dropped_for_a_311_subscriber(client, uid):
    # A 3.1.1 subscriber gets the same message without properties (its
    # PUBLISH has none): the parser would reject extra bytes as payload only
    # if they were there, so the payload must be exactly what was sent.
    sub = client(V311)
    sub.connect(uid + "-s")
    sub.subscribe(f"{uid}/t", qos=1)
    pub = client(V5)
    pub.connect(uid + "-p")
    pub.publish(f"{uid}/t", b"plain", qos=1, props=[(m.USER_PROPERTY, ("k", "v"))])
    assert sub.receive().payload == b"plain"


def test_07_v5_message_expiry(client, uid):
    # [MQTT-3.3.2-6]: the forwarded Message Expiry Interval is the received
    # value minus the time the message waited; [MQTT-3.3.2-5]: a message
    # whose interval passed before delivery started is not delivered.
    sub = client(V5)
    sub.connect(uid + "-s", props=[(m.SESSION_EXPIRY, 60)])
    sub.subscribe(f"{uid}/t", qos=1)
    sub.disconnect()
    pub = client(V5)
    pub.connect(uid + "-p")
    pub.publish(f"{uid}/t", b"short", qos=1, props=[(m.MESSAGE_EXPIRY, 1)])
    pub.publish(f"{uid}/t", b"long", qos=1, props=[(m.MESSAGE_EXPIRY, 100)])
    t0 = time.monotonic()
    # Wait until "short" has surely expired: poll the broker meanwhile so the
    # wait is bounded by a condition (the clock), not a blind sleep.
    while time.monotonic() - t0 < 1.2:
        pub.ping()
        pub.expect_nothing(0.1)
    sub = client(V5)
    assert sub.connect(uid + "-s", clean=False, props=[(m.SESSION_EXPIRY, 60)]).session_present
    got = sub.receive()
    assert got.payload == b"long"
    remaining = got.props.get(m.MESSAGE_EXPIRY)
    assert remaining is not None and 97 <= remaining <= 99, remaining
    sub.ping()  # "short" did not follow
    sub.disconnect(props=[(m.SESSION_EXPIRY, 0)])


def test_07_v5_topic_alias_resolved_before_routing(client, uid):
    # [MQTT-3.3.2-12]: the broker accepts aliases from 1 to the Topic Alias
    # Maximum it announced in CONNACK; a PUBLISH with an empty topic and a
    # known alias goes to the mapped topic; subscribers that allowed no
    # aliases get the full topic name [MQTT-3.1.2-27].
    sub = client(V5)
    sub.connect(uid + "-s")
    sub.subscribe(f"{uid}/#", qos=1)
    pub = client(V5)
    ack = pub.connect(uid + "-p")
    maximum = ack.props.get(m.TOPIC_ALIAS_MAXIMUM, 0)
    assert maximum >= 1, f"CONNACK announces no topic aliases: {ack!r}"
    pub.publish(f"{uid}/one", b"1", qos=1, props=[(m.TOPIC_ALIAS, maximum)])
    pub.publish("", b"2", qos=1, props=[(m.TOPIC_ALIAS, maximum)])
    # Re-mapping an alias to another topic is allowed.
    pub.publish(f"{uid}/two", b"3", qos=1, props=[(m.TOPIC_ALIAS, maximum)])
    pub.publish("", b"4", qos=1, props=[(m.TOPIC_ALIAS, maximum)])
    got = [sub.receive() for _ in range(4)]
    assert [(p.topic, p.payload) for p in got] == [
        (f"{uid}/one", b"1"), (f"{uid}/one", b"2"), (f"{uid}/two", b"3"), (f"{uid}/two", b"4"),
    ]
    assert all(p.props.get(m.TOPIC_ALIAS) is None for p in got)


def test_07_v5_topic_alias_invalid(client, uid):
    # [MQTT-3.3.2-8]: alias 0 and [MQTT-3.3.2-9]: an alias above the Topic
    # Alias Maximum close the connection with DISCONNECT 0x94 Topic Alias
    # invalid; an unknown alias with an empty topic is a Protocol Error
    # (0x82, §3.3.2.3.4).
    probe = client(V5)
    maximum = probe.connect(uid + "-probe").props.get(m.TOPIC_ALIAS_MAXIMUM, 0)
    cases = [
        (f"{uid}/t", 0, m.RC_TOPIC_ALIAS_INVALID),
        (f"{uid}/t", maximum + 1, m.RC_TOPIC_ALIAS_INVALID),
        ("", 1, m.RC_PROTOCOL_ERROR),
    ]
    for i, (topic, alias, code) in enumerate(cases):
        c = client(V5)
        c.connect(f"{uid}-{i}")
        c.send(m.publish(topic, b"x", 1, pid=1, version=V5, props=[(m.TOPIC_ALIAS, alias)]))
        got = c.expect_closed()
        assert [(p.type, p.reason) for p in got] == [(m.DISCONNECT, code)], (alias, got)
    probe.ping()  # the other connection is unaffected


def test_07_v5_receive_maximum_respected_by_the_broker(client, uid):
    # [MQTT-3.3.4-9]: the broker sends no more than the client's Receive
    # Maximum unacknowledged QoS 1/2 PUBLISH packets; [MQTT-3.3.4-10]: other
    # packets (here PINGRESP) are not held back by the full window.
    sub = client(V5)
    sub.connect(uid + "-s", props=[(m.RECEIVE_MAXIMUM, 2)])
    sub.subscribe(f"{uid}/t", qos=2)
    pub = client(V5)
    pub.connect(uid + "-p")
    for i in range(5):
        pub.publish(f"{uid}/t", f"q{i}".encode(), qos=1 + i % 2)
    first = [sub.expect(m.PUBLISH) for _ in range(2)]
    assert [p.payload for p in first] == [b"q0", b"q1"]
    sub.ping()  # PINGRESP comes, no third PUBLISH before it
    sub.expect_nothing(0.2)
    # Each completed flow opens the window for one more, in order.
    # A QoS 2 flow holds its slot until PUBCOMP: after PUBREC only the
    # PUBREL comes.
    sub.send(m.ack(m.PUBREC, first[1].pid, V5))
    assert sub.expect(m.PUBREL).pid == first[1].pid
    sub.expect_nothing(0.2)
    sub.send(m.ack(m.PUBCOMP, first[1].pid, V5))
    sub.send(m.ack(m.PUBACK, first[0].pid, V5))
    received = []
    while len(received) < 3:
        p = sub.receive()
        received.append(p.payload)
    assert received == [b"q2", b"q3", b"q4"]


def test_07_v5_receive_maximum_of_the_broker_allows_its_window(client, uid):
    # [MQTT-3.3.4-7] (from the broker's side): up to the Receive Maximum it
    # announced (absent: 65535, §3.2.2.3.3), unacknowledged QoS 2 PUBLISH
    # packets from the client are accepted, each answered with PUBREC.
    # (Exceeding it, DISCONNECT 0x93, is tested in Rust with a small limit:
    # myqtt-core/tests/broker_pubsub.rs.)
    c = client(V5)
    ack = c.connect(uid)
    limit = ack.props.get(m.RECEIVE_MAXIMUM, 65535)
    n = min(limit, 20)
    for pid in range(1, n + 1):
        c.send(m.publish(f"{uid}/t", b"x", 2, pid=pid, version=V5))
    recs = [c.expect(m.PUBREC).pid for _ in range(n)]
    assert recs == list(range(1, n + 1))
    for pid in recs:
        c.send(m.ack(m.PUBREL, pid, V5))
    assert [c.expect(m.PUBCOMP).pid for _ in range(n)] == recs


def test_07_v5_maximum_packet_size_of_the_client(client, uid):
    # [MQTT-3.1.2-24]: the broker does not send a packet larger than the
    # client's Maximum Packet Size; [MQTT-3.1.2-25]: it drops such a message
    # for that client as if sent, and delivers the others.
    small = client(V5)
    small.connect(uid + "-small", props=[(m.MAXIMUM_PACKET_SIZE, 200)])
    small.subscribe(f"{uid}/t", qos=1)
    big = client(V5)
    big.connect(uid + "-big")
    big.subscribe(f"{uid}/t", qos=1)
    pub = client(V5)
    pub.connect(uid + "-p")
    pub.publish(f"{uid}/t", b"L" * 500, qos=1)
    pub.publish(f"{uid}/t", b"s" * 10, qos=1)
    assert [big.receive().payload for _ in range(2)] == [b"L" * 500, b"s" * 10]
    assert small.receive().payload == b"s" * 10


def test_07_v5_topic_aliases_do_not_survive_the_connection(client, uid):
    # [MQTT-3.3.2-7]: alias mappings belong to one network connection; after
    # a reconnect (even to the same session) an alias without a topic is
    # unknown: Protocol Error 0x82.
    props = [(m.SESSION_EXPIRY, 60)]
    c = client(V5)
    c.connect(uid, props=props)
    c.publish(f"{uid}/t", b"x", qos=1, props=[(m.TOPIC_ALIAS, 1)])
    c.disconnect()
    c = client(V5)
    assert c.connect(uid, clean=False, props=props).session_present
    c.send(m.publish("", b"y", 1, pid=5, version=V5, props=[(m.TOPIC_ALIAS, 1)]))
    got = c.expect_closed()
    assert [(p.type, p.reason) for p in got] == [(m.DISCONNECT, m.RC_PROTOCOL_ERROR)], got
