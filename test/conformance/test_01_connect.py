"""CONNECT and CONNACK (MQTT 3.1.1 §3.1-3.2, MQTT 5.0 §3.1-3.2), raw bytes."""

import pytest

import mqttpkt as m
from mqttpkt import V31, V311, V5


def test_01_connect_first_packet_must_be_connect(client):
    # [MQTT-3.1.0-1]: the first packet from the client must be CONNECT; the
    # server closes the connection otherwise.
    c = client(V311)
    c.send(m.pingreq())
    assert c.expect_closed() == []


def test_01_connect_bad_protocol_level_311(client, uid):
    # [MQTT-3.1.2-2] (3.1.1): an unsupported protocol level gets CONNACK
    # return code 0x01 and the connection is closed.
    c = client(V311)
    c.send(m.connect(uid, version=7))
    got = c.expect_closed()
    assert len(got) == 1 and got[0].type == m.CONNACK, got
    assert got[0].reason == m.CONNACK_UNACCEPTABLE_PROTOCOL
    assert not got[0].session_present


def test_01_connect_bad_protocol_name_311(client, uid):
    # [MQTT-3.1.2-1] (3.1.1): a wrong protocol name may be answered with
    # CONNACK 0x01 [MQTT-3.1.2-2]; either way the connection closes and no
    # session is created.
    c = client(V311)
    c.send(m.connect(uid, version=V311, protocol_name="MQTX"))
    got = c.expect_closed()
    assert all(p.type == m.CONNACK and p.reason == m.CONNACK_UNACCEPTABLE_PROTOCOL for p in got), got


def test_01_connect_bad_protocol_name_v5(client, uid):
    # [MQTT-3.1.2-1] (5.0): a wrong protocol name at level 5 is answered with
    # CONNACK 0x84 Unsupported Protocol Version, then the connection closes.
    c = client(V5)
    c.send(m.connect(uid, version=V5, protocol_name="MQIsdp"))
    got = c.expect_closed()
    assert [(p.type, p.reason) for p in got] == [(m.CONNACK, m.RC_UNSUPPORTED_PROTOCOL_VERSION)], got


def test_01_connect_mqtt31_protocol_name_is_accepted(client, uid):
    # MQTT 3.1 (protocol name "MQIsdp", level 3) is still served.
    c = client(V31)
    ack = c.connect(uid)
    assert not ack.session_present
    c.ping()


def test_01_connect_reserved_flag_set(client, uid):
    # [MQTT-3.1.2-3]: the reserved bit of the connect flags must be 0; the
    # server closes the connection otherwise (no CONNACK 0x00).
    for version in (V311, V5):
        c = client(version)
        c.send(m.connect(uid, version=version, reserved_flag=True))
        got = c.expect_closed()
        assert not any(p.type == m.CONNACK and p.reason == 0 for p in got), got


def test_01_connect_will_qos_3(client, uid):
    # [MQTT-3.1.2-14]: a will QoS of 3 is a protocol violation that closes
    # the connection.
    c = client(V311)
    c.send(m.connect(uid, will={"topic": "w", "payload": b"x", "qos": 3}))
    got = c.expect_closed()
    assert not any(p.type == m.CONNACK and p.reason == 0 for p in got), got


def test_01_connect_will_flags_without_will(client, uid):
    # [MQTT-3.1.2-13] / [MQTT-3.1.2-15]: without the will flag, will QoS and
    # will retain must be 0; the server closes the connection otherwise.
    for flags in (0x02 | 0x08, 0x02 | 0x20):
        c = client(V311)
        c.send(m.connect(uid, flags_override=flags))
        got = c.expect_closed()
        assert not any(p.type == m.CONNACK and p.reason == 0 for p in got), (flags, got)


def test_01_connect_password_without_username_311(client, uid):
    # [MQTT-3.1.2-22] (3.1.1): the password flag needs the user name flag.
    c = client(V311)
    c.send(m.connect(uid, password=b"secret"))
    got = c.expect_closed()
    assert not any(p.type == m.CONNACK and p.reason == 0 for p in got), got


def test_01_connect_empty_client_id_clean_session_0_311(client):
    # [MQTT-3.1.3-8] (3.1.1): an empty client id with clean session 0 gets
    # CONNACK 0x02 Identifier rejected, then the connection closes.
    c = client(V311)
    c.send(m.connect("", clean=False))
    got = c.expect_closed()
    assert [(p.type, p.reason) for p in got] == [(m.CONNACK, m.CONNACK_IDENTIFIER_REJECTED)], got


def test_01_connect_empty_client_id_clean_session_1_311(client):
    # [MQTT-3.1.3-6] (3.1.1): with clean session 1 the server assigns an id
    # and accepts the connection.
    c = client(V311)
    c.connect("", clean=True)
    c.ping()


def test_01_connect_v5_assigned_client_id(client):
    # [MQTT-3.1.3-6] / [MQTT-3.2.2-16] (5.0): an empty client id gets a
    # unique id returned as Assigned Client Identifier.
    ids = set()
    for _ in range(2):
        c = client(V5)
        ack = c.connect("")
        assigned = ack.props.get(m.ASSIGNED_CLIENT_ID)
        assert assigned, ack
        ids.add(assigned)
    assert len(ids) == 2


def test_01_connect_v5_given_client_id_is_not_reassigned(client, uid):
    # [MQTT-3.2.2-16] (5.0): the Assigned Client Identifier is only sent
    # when the client sent an empty id.
    c = client(V5)
    ack = c.connect(uid)
    assert ack.props.get(m.ASSIGNED_CLIENT_ID) is None


def test_01_connect_duplicate_client_id_takeover_v5(client, uid):
    # [MQTT-3.1.4-3] (5.0): a second connection with the same client id
    # takes over; the old one gets DISCONNECT 0x8E Session taken over and is
    # closed.
    old = client(V5)
    old.connect(uid)
    new = client(V5)
    new.connect(uid)
    got = old.expect_closed()
    assert [(p.type, p.reason) for p in got] == [(m.DISCONNECT, m.RC_SESSION_TAKEN_OVER)], got
    new.ping()


def test_01_connect_duplicate_client_id_takeover_311(client, uid):
    # [MQTT-3.1.4-2] (3.1.1): the server disconnects the existing client.
    old = client(V311)
    old.connect(uid)
    new = client(V311)
    new.connect(uid)
    assert old.expect_closed() == []
    new.ping()


def test_01_connect_session_present_311(client, uid):
    # [MQTT-3.2.2-3]: no stored session -> session present 0;
    # [MQTT-3.2.2-2]: clean session 0 resuming a stored session -> 1;
    # [MQTT-3.2.2-1]: clean session 1 -> 0, and the session is discarded
    # [MQTT-3.1.2-6].
    c = client(V311)
    assert not c.connect(uid, clean=False).session_present
    c.disconnect()
    c = client(V311)
    assert c.connect(uid, clean=False).session_present
    c.disconnect()
    c = client(V311)
    assert not c.connect(uid, clean=True).session_present
    c.disconnect()
    c = client(V311)
    assert not c.connect(uid, clean=False).session_present
    c.disconnect()


def test_01_connect_session_present_v5_follows_session_expiry(client, uid):
    # [MQTT-3.2.2-2] / [MQTT-3.2.2-3] (5.0): session present is 1 only when
    # clean start is 0 and a session was kept (Session Expiry Interval > 0);
    # with Session Expiry 0 the session ends with the connection.
    c = client(V5)
    assert not c.connect(uid, clean=True, props=[(m.SESSION_EXPIRY, 60)]).session_present
    c.disconnect()
    c = client(V5)
    assert c.connect(uid, clean=False, props=[(m.SESSION_EXPIRY, 0)]).session_present
    c.disconnect()
    c = client(V5)
    assert not c.connect(uid, clean=False).session_present
    c.disconnect()


def test_01_connect_second_connect(client, uid):
    # [MQTT-3.1.0-2]: a second CONNECT is a protocol violation; the server
    # closes the connection (MQTT 5: DISCONNECT 0x82 Protocol Error first).
    c = client(V311)
    c.connect(uid)
    c.send(m.connect(uid))
    assert c.expect_closed() == []

    c = client(V5)
    c.connect(uid + "-5")
    c.send(m.connect(uid + "-5", version=V5))
    got = c.expect_closed()
    assert [(p.type, p.reason) for p in got] == [(m.DISCONNECT, m.RC_PROTOCOL_ERROR)], got


def test_01_connect_v5_duplicate_property(client, uid):
    # 5.0 §3.1.2.11.2: Session Expiry Interval twice in a CONNECT is a
    # Protocol Error; [MQTT-3.1.4-1]: the connection closes (a CONNACK, if
    # any, carries a failure code).
    c = client(V5)
    c.send(m.connect(uid, version=V5, props=[(m.SESSION_EXPIRY, 5), (m.SESSION_EXPIRY, 6)]))
    got = c.expect_closed()
    assert all(p.type == m.CONNACK and p.reason >= 0x80 for p in got), got


def test_01_connect_v5_receive_maximum_0(client, uid):
    # 5.0 §3.1.2.11.3: a Receive Maximum of 0 is a Protocol Error.
    c = client(V5)
    c.send(m.connect(uid, version=V5, props=[(m.RECEIVE_MAXIMUM, 0)]))
    got = c.expect_closed()
    assert all(p.type == m.CONNACK and p.reason >= 0x80 for p in got), got


def test_01_connect_will_topic_with_wildcard(client, uid):
    # [MQTT-3.1.3-11] / [MQTT-3.3.2-2]: the will topic is a topic name, with
    # no wildcards; such a CONNECT is refused and the connection closed.
    for version in (V311, V5):
        c = client(version)
        c.send(m.connect(uid, version=version, will={"topic": f"{uid}/#", "payload": b"x"}))
        got = c.expect_closed()
        assert all(p.type == m.CONNACK and p.reason >= 0x80 for p in got), got


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_01_connect_takeover_of_a_clean_session_starts_a_new_one(client, uid, version):
    # [MQTT-3.1.2-6] (3.1.1): a clean session lasts as long as its network
    # connection; 5.0 §3.1.4: with Session Expiry 0 the session ends on the
    # takeover. A new connection with clean session / clean start 0 taking
    # over such a client therefore gets session present 0 and none of the
    # old subscriptions [MQTT-3.2.2-3].
    old = client(version)
    old.connect(uid, clean=True)
    old.subscribe(f"{uid}/t", qos=1)
    new = client(version)
    props = [(m.SESSION_EXPIRY, 60)] if version == V5 else None
    ack = new.connect(uid, clean=False, props=props)
    old.expect_closed()
    assert not ack.session_present
    pub = client(V311)
    pub.connect(uid + "-p")
    pub.publish(f"{uid}/t", b"not for the new session", qos=1)
    new.ping()
    new.expect_nothing(0.2)
