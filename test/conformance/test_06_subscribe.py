"""SUBSCRIBE / UNSUBSCRIBE and topic matching (3.1.1 §3.8-3.11 and §4.7,
5.0 §3.8-3.11, §4.7 and §4.8.2)."""

import mqttpkt as m
from mqttpkt import V311, V5


def _suback_or_close(c):
    """The SUBACK, or None when the broker refused the whole SUBSCRIBE by
    closing the connection (MQTT 5: after a DISCONNECT with 0x8F, 0x81 or
    0x82, which it must then be)."""
    p = c.recv()
    if p.type == m.SUBACK:
        return p
    assert p.type == m.DISCONNECT, p
    assert p.reason in (m.RC_TOPIC_FILTER_INVALID, m.RC_MALFORMED, m.RC_PROTOCOL_ERROR), p
    assert c.expect_closed() == []
    return None


def test_06_subscribe_several_filters_one_result_each(client, uid):
    # [MQTT-3.8.4-5] (3.1.1): the SUBACK has one return code per filter, in
    # order, with the SUBSCRIBE's packet id [MQTT-3.8.4-2]; granted QoS as
    # asked here [MQTT-3.8.4-6].
    c = client(V311)
    c.connect(uid)
    pid = 0x0A0B
    c.send(m.subscribe(pid, [(f"{uid}/a", 0), (f"{uid}/b/+", 1), (f"{uid}/c/#", 2)]))
    s = c.expect(m.SUBACK)
    assert (s.pid, s.codes) == (pid, [0, 1, 2])
    pub = client(V311)
    pub.connect(uid + "-p")
    for t in (f"{uid}/a", f"{uid}/b/x", f"{uid}/c/d/e"):
        pub.publish(t, t.encode(), qos=2)
    got = [c.receive() for _ in range(3)]
    assert [(p.topic, p.qos) for p in got] == [(f"{uid}/a", 0), (f"{uid}/b/x", 1), (f"{uid}/c/d/e", 2)]


def test_06_subscribe_invalid_filter_among_valid_ones_v5(client, uid):
    # [MQTT-3.8.4-5] (5.0): one reason code per filter; a bad filter gets a
    # failure code (0x8F Topic Filter invalid) while the others are granted,
    # or the broker closes the connection (DISCONNECT 0x8F first), the
    # filter breaking [MQTT-4.7.1-1]. Either way the good filters never get
    # a failure code and nothing is granted for the bad one.
    c = client(V5)
    c.connect(uid)
    c.send(m.subscribe(1, [(f"{uid}/ok", 1), (f"{uid}/#/bad", 1), (f"{uid}/ok2", 0)], V5))
    s = _suback_or_close(c)
    if s is None:
        return
    assert s.codes[0] == 1 and s.codes[2] == 0
    assert s.codes[1] >= 0x80, s.codes


def test_06_subscribe_replacing_a_subscription_keeps_one(client, uid):
    # [MQTT-3.8.4-3] (3.1.1): a SUBSCRIBE with a filter equal to an existing
    # one replaces it (new QoS), and a message is delivered once.
    c = client(V311)
    c.connect(uid)
    assert c.subscribe(f"{uid}/t", qos=0) == [0]
    assert c.subscribe(f"{uid}/t", qos=2) == [2]
    pub = client(V311)
    pub.connect(uid + "-p")
    pub.publish(f"{uid}/t", b"x", qos=2)
    assert c.receive().qos == 2
    c.ping()


def test_06_subscribe_overlapping_deliver_one_copy(client, uid):
    # [MQTT-3.3.5-1] (3.1.1): overlapping subscriptions of one client deliver
    # the message (here once) at the highest granted QoS of the matches.
    c = client(V311)
    c.connect(uid)
    c.subscribe(f"{uid}/#", f"{uid}/+/b", f"{uid}/a/b", qos=0, options=[0, 2, 1])
    pub = client(V311)
    pub.connect(uid + "-p")
    pub.publish(f"{uid}/a/b", b"x", qos=2)
    assert c.receive().qos == 2
    c.ping()  # no second copy before PINGRESP


def test_06_subscribe_overlapping_v5_subscription_identifiers(client, uid):
    # [MQTT-3.3.4-3] / [MQTT-3.3.4-4] (5.0): the single copy carries the
    # Subscription Identifiers of every matching subscription that has one.
    c = client(V5)
    c.connect(uid)
    c.subscribe(f"{uid}/#", qos=1, props=[(m.SUBSCRIPTION_ID, 7)])
    c.subscribe(f"{uid}/+/b", qos=1, props=[(m.SUBSCRIPTION_ID, 300)])
    c.subscribe(f"{uid}/a/+", qos=1)  # no identifier
    pub = client(V5)
    pub.connect(uid + "-p")
    pub.publish(f"{uid}/a/b", b"x", qos=1)
    got = c.receive()
    assert sorted(got.props.all(m.SUBSCRIPTION_ID)) == [7, 300]
    c.ping()
    # A message matching one subscription carries only its identifier.
    pub.publish(f"{uid}/z", b"y", qos=1)
    assert c.receive().props.all(m.SUBSCRIPTION_ID) == [7]


def test_06_subscribe_v5_no_local(client, uid):
    # [MQTT-3.8.3-3] (5.0): with No Local, messages are not forwarded to the
    # connection that published them; other subscribers still get them.
    me = client(V5)
    me.connect(uid)
    me.subscribe(f"{uid}/t", options=[m.sub_options(qos=1, no_local=True)])
    other = client(V5)
    other.connect(uid + "-o")
    other.subscribe(f"{uid}/t", qos=1)
    me.publish(f"{uid}/t", b"mine", qos=1)
    assert other.receive().payload == b"mine"
    other.publish(f"{uid}/t", b"theirs", qos=1)
    assert me.receive().payload == b"theirs"  # "mine" never came
    assert other.receive().payload == b"theirs"


def test_06_subscribe_v5_no_local_on_shared_subscription_is_a_protocol_error(client, uid):
    # [MQTT-3.8.3-4] (5.0): No Local on a shared subscription is a Protocol
    # Error: DISCONNECT 0x82, then close.
    c = client(V5)
    c.connect(uid)
    c.send(m.subscribe(1, [(f"$share/g/{uid}/t", m.sub_options(qos=1, no_local=True))], V5))
    got = c.expect_closed()
    assert [(p.type, p.reason) for p in got] == [(m.DISCONNECT, m.RC_PROTOCOL_ERROR)], got


def test_06_subscribe_shared_subscription_distributes(client, uid):
    # MQTT 5.0 §4.8.2: each message to a shared subscription goes to one
    # member of the group ([MQTT-4.8.2-1]: filter $share/{name}/{filter});
    # a non-shared subscriber still gets every message.
    members = []
    for i in range(2):
        c = client(V5)
        c.connect(f"{uid}-m{i}")
        assert c.subscribe(f"$share/grp/{uid}/t", qos=1) == [1]
        members.append(c)
    plain = client(V5)
    plain.connect(uid + "-plain")
    plain.subscribe(f"{uid}/t", qos=1)
    pub = client(V5)
    pub.connect(uid + "-p")
    n = 10
    for i in range(n):
        pub.publish(f"{uid}/t", str(i).encode(), qos=1)
    assert [plain.receive().payload for _ in range(n)] == [str(i).encode() for i in range(n)]
    # Every message reaches exactly one member: collect until all n came.
    seen = []
    counts = [0, 0]
    while len(seen) < n:
        progressed = False
        for i, c in enumerate(members):
            try:
                p = c.receive(timeout=0.05)
            except TimeoutError:
                continue
            seen.append(p.payload)
            counts[i] += 1
            progressed = True
        if not progressed and len(seen) < n:
            # Nothing buffered anywhere: wait on the first member a bit more.
            try:
                p = members[0].receive(timeout=2)
                seen.append(p.payload)
                counts[0] += 1
            except TimeoutError:
                break
    assert sorted(seen, key=int) == [str(i).encode() for i in range(n)]
    for c in members:
        c.expect_nothing(0.1)
    assert all(counts), f"one member got everything: {counts}"


def test_06_subscribe_shared_subscription_with_invalid_share_name(client, uid):
    # [MQTT-4.8.2-2] (5.0): a ShareName must not contain "/", "+" or "#"
    # and must be non-empty [MQTT-4.8.2-1]: such a filter is refused (or
    # the connection is closed as malformed).
    c = client(V5)
    c.connect(uid)
    c.send(m.subscribe(1, [(f"$share/g+x/{uid}", 1), (f"$share//{uid}", 1)], V5))
    s = _suback_or_close(c)
    if s is None:
        return
    assert all(code >= 0x80 for code in s.codes), s.codes


def test_06_unsubscribe_results(client, uid):
    # [MQTT-3.10.4-4] / [MQTT-3.10.4-5] (3.1.1): UNSUBACK with the packet id
    # even when nothing matched; 5.0 §3.11.3: one reason code per filter,
    # 0x11 No subscription existed. Delivery stops for the removed filter
    # [MQTT-3.10.4-2].
    c = client(V5)
    c.connect(uid)
    c.subscribe(f"{uid}/a", f"{uid}/b", qos=1)
    assert c.unsubscribe(f"{uid}/a", f"{uid}/nope") == [m.RC_SUCCESS, m.RC_NO_SUBSCRIPTION_EXISTED]
    pub = client(V5)
    pub.connect(uid + "-p")
    pub.publish(f"{uid}/a", b"gone", qos=1)
    pub.publish(f"{uid}/b", b"kept", qos=1)
    assert c.receive().payload == b"kept"

    old = client(V311)
    old.connect(uid + "-311")
    old.send(m.unsubscribe(0x55, [f"{uid}/nope"]))
    u = old.expect(m.UNSUBACK)
    assert (u.pid, u.codes) == (0x55, [])


def test_06_hash_does_not_receive_dollar_topics(client, uid):
    # [MQTT-4.7.2-1]: filters starting with a wildcard do not match topics
    # starting with "$"; "$SYS/#" does.
    wild = client(V311)
    wild.connect(uid + "-w")
    wild.subscribe("#", "+/+", qos=0)
    sys_ = client(V311)
    sys_.connect(uid + "-s")
    sys_.subscribe("$SYS/#")
    pub = client(V311)
    pub.connect(uid + "-p")
    pub.publish(f"$SYS/{uid}", b"sys", qos=1)
    pub.publish(f"{uid}/after", b"normal", qos=1)
    # The listener's own $SYS/broker/... figures (retained) may come first.
    while True:
        p = sys_.receive()
        if p.topic == f"$SYS/{uid}":
            break
        assert p.topic.startswith("$SYS/broker/"), p
    # "#" sees only the ordinary topic; messages from other tests may
    # interleave, so skip those, but "$SYS" must not come before ours.
    while True:
        p = wild.receive()
        assert not p.topic.startswith("$"), p
        if p.topic == f"{uid}/after":
            break


def test_06_subscribe_topic_matching(client, uid):
    # §4.7.1 (3.1.1): "+" matches one level, including an empty one;
    # "a/#" matches "a" itself [MQTT-4.7.1-2]; topics are case sensitive
    # and no normalisation happens [MQTT-4.7.3-4].
    c = client(V311)
    c.connect(uid)
    c.subscribe(f"{uid}/+/x", f"{uid}/all/#", qos=0)
    pub = client(V311)
    pub.connect(uid + "-p")
    for t in (f"{uid}//x", f"{uid}/A/X", f"{uid}/all", f"{uid}/y/z/x", f"{uid}/Q/x"):
        pub.publish(t, b"", qos=1)
    assert [c.receive().topic for _ in range(3)] == [f"{uid}//x", f"{uid}/all", f"{uid}/Q/x"]
    c.ping()


def test_06_subscribe_again_replaces_the_options_and_identifier(client, uid):
    # [MQTT-3.8.4-3]: a SUBSCRIBE for an existing filter replaces the
    # subscription: here No Local and Subscription Identifier 3 are dropped
    # by subscribing again without them.
    c = client(V5)
    c.connect(uid)
    c.subscribe(f"{uid}/t", options=[m.sub_options(qos=0, no_local=True)], props=[(m.SUBSCRIPTION_ID, 3)])
    c.subscribe(f"{uid}/t", options=[m.sub_options(qos=0)])
    c.publish(f"{uid}/t", b"own")
    got = c.receive()
    assert got.payload == b"own"
    assert got.props.all(m.SUBSCRIPTION_ID) == []


def test_06_unsubscribe_shared_subscription(client, uid):
    # 5.0 §4.8.2 and §3.11.3: a shared subscription is removed by its full
    # filter; another group name is a different subscription (0x11).
    c = client(V5)
    c.connect(uid)
    c.subscribe(f"$share/g/{uid}/t", qos=1)
    assert c.unsubscribe(f"$share/g/{uid}/t", f"$share/h/{uid}/t") == [m.RC_SUCCESS, m.RC_NO_SUBSCRIPTION_EXISTED]
    pub = client(V5)
    pub.connect(uid + "-p")
    assert pub.publish(f"{uid}/t", b"x", qos=1) == m.RC_NO_MATCHING_SUBSCRIBERS
