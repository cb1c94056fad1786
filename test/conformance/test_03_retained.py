"""Retained messages (3.1.1 §3.3.1.3; 5.0 §3.3.1.3 and the Retain Handling
and Retain As Published subscription options of §3.8.3.1)."""

import mqttpkt as m
from mqttpkt import V311, V5


def test_03_retained_set_replace_clear(client, uid):
    # [MQTT-3.3.1-5] (3.1.1): a retained message is stored and sent to later
    # subscribers with RETAIN 1 [MQTT-3.3.1-8]; [MQTT-3.3.1-7]: a new one
    # replaces it; [MQTT-3.3.1-10]: an empty retained payload clears it and
    # [MQTT-3.3.1-11] is not itself stored.
    topic = f"{uid}/r"
    pub = client(V311)
    pub.connect(uid + "-p")
    pub.publish(topic, b"first", qos=1, retain=True)

    s1 = client(V311)
    s1.connect(uid + "-s1")
    s1.subscribe(topic, qos=1)
    got = s1.receive()
    assert (got.payload, got.retain, got.qos) == (b"first", True, 1)

    pub.publish(topic, b"second", qos=1, retain=True)
    # To an established subscription the retain flag is 0 [MQTT-3.3.1-9].
    live = s1.receive()
    assert (live.payload, live.retain) == (b"second", False)

    s2 = client(V311)
    s2.connect(uid + "-s2")
    s2.subscribe(topic, qos=1)
    got = s2.receive()
    assert (got.payload, got.retain) == (b"second", True)
    s2.ping()  # only the latest was kept

    pub.publish(topic, b"", qos=1, retain=True)
    assert s1.receive().payload == b""  # live subscribers still get it
    s3 = client(V311)
    s3.connect(uid + "-s3")
    s3.subscribe(topic, qos=1)
    s3.ping()  # PINGRESP first: no retained message was sent


def test_03_retained_qos_is_downgraded_to_the_subscription(client, uid):
    # [MQTT-3.8.4-6] (3.1.1) with [MQTT-3.3.1-6]: a retained QoS 2 message
    # goes to a QoS 0 subscription at QoS 0.
    pub = client(V311)
    pub.connect(uid + "-p")
    pub.publish(f"{uid}/r", b"kept", qos=2, retain=True)
    sub = client(V311)
    sub.connect(uid + "-s")
    sub.subscribe(f"{uid}/#", qos=0)
    got = sub.receive()
    assert (got.topic, got.qos, got.retain) == (f"{uid}/r", 0, True)
    pub.publish(f"{uid}/r", b"", retain=True)


def test_03_retained_matching_wildcards_all_sent(client, uid):
    # [MQTT-3.3.1-6] (3.1.1): every retained message matching the new
    # subscription's filter is sent.
    pub = client(V311)
    pub.connect(uid + "-p")
    topics = [f"{uid}/a/1", f"{uid}/a/2", f"{uid}/b/1"]
    for t in topics:
        pub.publish(t, t.encode(), qos=1, retain=True)
    sub = client(V311)
    sub.connect(uid + "-s")
    sub.subscribe(f"{uid}/+/1", qos=1)
    got = sorted(sub.receive().topic for _ in range(2))
    assert got == [f"{uid}/a/1", f"{uid}/b/1"]
    sub.ping()
    for t in topics:
        pub.publish(t, b"", retain=True)


def test_03_retain_handling_0_1_2(client, uid):
    # [MQTT-3.3.1-9] (5.0): Retain Handling 0 sends retained messages on
    # every SUBSCRIBE; [MQTT-3.3.1-10]: 1 only when the subscription is new;
    # [MQTT-3.3.1-11]: 2 never.
    topic = f"{uid}/r"
    pub = client(V5)
    pub.connect(uid + "-p")
    pub.publish(topic, b"kept", qos=1, retain=True)
    c = client(V5)
    c.connect(uid + "-s")
    for handling, expected in ((0, True), (0, True), (1, False), (2, False)):
        c.subscribe(topic, options=[m.sub_options(qos=1, retain_handling=handling)])
        if expected:
            got = c.receive()
            assert (got.payload, got.retain) == (b"kept", True)
        c.ping()
    fresh = client(V5)
    fresh.connect(uid + "-f")
    fresh.subscribe(topic, options=[m.sub_options(qos=1, retain_handling=1)])
    assert fresh.receive().payload == b"kept"
    fresh2 = client(V5)
    fresh2.connect(uid + "-g")
    fresh2.subscribe(topic, options=[m.sub_options(qos=1, retain_handling=2)])
    fresh2.ping()
    pub.publish(topic, b"", retain=True)


def test_03_retain_as_published(client, uid):
    # [MQTT-3.3.1-12] (5.0): with Retain As Published 0 the broker forwards
    # with RETAIN 0; [MQTT-3.3.1-13]: with 1 it keeps the publisher's flag.
    topic = f"{uid}/rap"
    plain = client(V5)
    plain.connect(uid + "-a")
    plain.subscribe(topic, options=[m.sub_options(qos=1)])
    rap = client(V5)
    rap.connect(uid + "-b")
    rap.subscribe(topic, options=[m.sub_options(qos=1, retain_as_published=True)])
    pub = client(V5)
    pub.connect(uid + "-p")
    pub.publish(topic, b"r", qos=1, retain=True)
    pub.publish(topic, b"n", qos=1, retain=False)
    assert [(p.payload, p.retain) for p in (plain.receive(), plain.receive())] == [(b"r", False), (b"n", False)]
    assert [(p.payload, p.retain) for p in (rap.receive(), rap.receive())] == [(b"r", True), (b"n", False)]
    pub.publish(topic, b"", retain=True)


def test_03_retained_not_sent_for_shared_subscriptions(client, uid):
    # MQTT 5.0 §4.8.2: retained messages are not sent when a shared
    # subscription is made.
    pub = client(V5)
    pub.connect(uid + "-p")
    pub.publish(f"{uid}/r", b"kept", qos=1, retain=True)
    sub = client(V5)
    sub.connect(uid + "-s")
    sub.subscribe(f"$share/g/{uid}/r", qos=1)
    sub.ping()
    pub.publish(f"{uid}/r", b"", retain=True)


def test_03_retained_expiry_counts_down_and_carries_the_subscription_identifier(client, uid):
    # [MQTT-3.3.2-6] (5.0): a retained message is sent with its remaining
    # Message Expiry Interval; its PUBLISH carries the Subscription
    # Identifier of the SUBSCRIBE that caused it (§3.8.2.1.2, [MQTT-3.3.4-3]).
    import time

    topic = f"{uid}/r"
    pub = client(V5)
    pub.connect(uid + "-p")
    pub.publish(topic, b"k", qos=1, retain=True, props=[(m.MESSAGE_EXPIRY, 100)])
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.1:  # let at least a second pass, polling
        pub.ping()
        pub.expect_nothing(0.1)
    sub = client(V5)
    sub.connect(uid + "-s")
    sub.subscribe(topic, qos=1, props=[(m.SUBSCRIPTION_ID, 5)])
    got = sub.receive()
    assert got.retain and got.payload == b"k"
    assert 97 <= got.props.get(m.MESSAGE_EXPIRY) <= 99
    assert got.props.all(m.SUBSCRIPTION_ID) == [5]
    pub.publish(topic, b"", retain=True)


def test_03_retain_handling_1_after_a_session_resumes(client, uid):
    # [MQTT-3.3.1-10] (5.0): the subscriptions of a resumed session exist,
    # so subscribing again with Retain Handling 1 sends no retained message.
    topic = f"{uid}/r"
    pub = client(V5)
    pub.connect(uid + "-p")
    pub.publish(topic, b"k", qos=1, retain=True)
    props = [(m.SESSION_EXPIRY, 60)]
    c = client(V5)
    c.connect(uid, props=props)
    c.subscribe(topic, options=[m.sub_options(qos=1, retain_handling=1)])
    assert c.receive().payload == b"k"
    c.disconnect()
    c = client(V5)
    assert c.connect(uid, clean=False, props=props).session_present
    c.subscribe(topic, options=[m.sub_options(qos=1, retain_handling=1)])
    c.ping()
    c.disconnect(props=[(m.SESSION_EXPIRY, 0)])
    pub.publish(topic, b"", retain=True)
