"""Malformed packets and protocol errors after CONNECT: each closes only the
connection that sent it, an MQTT 5 client first getting DISCONNECT with the
reason code that applies (5.0 §4.13: 0x81 Malformed Packet, 0x82 Protocol
Error), while every other connection keeps working."""

import pytest

import mqttpkt as m
from mqttpkt import V311, V5

MALFORMED = m.RC_MALFORMED
PROTOCOL = m.RC_PROTOCOL_ERROR


def _publish_raw(topic_field, rest=b"", flags=0, version=V311, props=b"\x00"):
    """A PUBLISH whose topic field is given as raw bytes (length included)."""
    body = topic_field + (props if version == V5 else b"") + rest
    return m.packet(m.PUBLISH, flags, body)


def _cases():
    topic = m.utf8("t/x")
    v5_props_ok = m.properties([(m.MESSAGE_EXPIRY, 10)])
    return [
        # §2.2.3 (3.1.1) / §1.5.5 (5.0) [MQTT-1.5.5-1]: the remaining length
        # takes at most four bytes.
        ("remaining_length_5_bytes", V311, b"\x30\xff\xff\xff\xff\x01", None),
        ("remaining_length_5_bytes", V5, b"\x30\xff\xff\xff\xff\x01", {MALFORMED}),
        # A body shorter than its own fields say: the topic length runs past
        # the end of the packet (truncated string) [MQTT-1.5.3-1 ff.].
        ("truncated_topic", V311, m.packet(m.PUBLISH, 0, m.u16(50) + b"t/x"), None),
        ("truncated_topic", V5, m.packet(m.PUBLISH, 0, m.u16(50) + b"t/x"), {MALFORMED}),
        # A QoS 1 PUBLISH cut before its packet identifier.
        ("truncated_packet_id", V311, m.packet(m.PUBLISH, 0x02, topic + b"\x00"), None),
        # [MQTT-1.5.3-1]: ill-formed UTF-8 in a topic name.
        ("invalid_utf8_topic", V311, _publish_raw(m.utf8(b"t/\xc3\x28")), None),
        ("invalid_utf8_topic", V5, _publish_raw(m.utf8(b"t/\xc3\x28"), version=V5), {MALFORMED}),
        # [MQTT-1.5.3-1]: UTF-16 surrogates encoded in UTF-8 are ill-formed.
        ("surrogate_in_topic", V311, _publish_raw(m.utf8(b"t/\xed\xa0\x80")), None),
        # [MQTT-1.5.3-2]: U+0000 in a UTF-8 string.
        ("nul_in_topic", V311, _publish_raw(m.utf8(b"t/\x00x")), None),
        ("nul_in_topic", V5, _publish_raw(m.utf8(b"t/\x00x"), version=V5), {MALFORMED}),
        ("nul_in_filter", V311, m.subscribe(1, [("a/\x00", 0)]), None),
        # [MQTT-3.3.1-4]: QoS 3 in a PUBLISH.
        ("qos_3", V311, m.publish("t/x", b"p", qos=3, pid=1), None),
        ("qos_3", V5, m.publish("t/x", b"p", qos=3, pid=1, version=V5), {MALFORMED}),
        # [MQTT-3.3.1-2]: DUP 1 on a QoS 0 PUBLISH.
        ("dup_on_qos_0", V5, m.publish("t/x", b"p", qos=0, dup=True, version=V5), {MALFORMED, PROTOCOL}),
        # [MQTT-2.3.1-1]: packet identifier 0 (PUBLISH QoS 1, SUBSCRIBE,
        # UNSUBSCRIBE).
        ("packet_id_0_publish", V311, m.publish("t/x", b"p", qos=1, pid=0), None),
        ("packet_id_0_publish", V5, m.publish("t/x", b"p", qos=1, pid=0, version=V5), {MALFORMED, PROTOCOL}),
        ("packet_id_0_subscribe", V311, m.subscribe(0, [("a", 0)]), None),
        ("packet_id_0_unsubscribe", V5, m.unsubscribe(0, ["a"], V5), {MALFORMED, PROTOCOL}),
        # [MQTT-2.2.2-2] (3.1.1) / [MQTT-3.8.1-1]: reserved fixed-header flags
        # of SUBSCRIBE must be 0010; PUBREL likewise [MQTT-3.6.1-1].
        ("subscribe_flags_0", V311, m.packet(m.SUBSCRIBE, 0, m.u16(1) + m.utf8("a") + b"\x00"), None),
        ("subscribe_flags_0", V5, m.packet(m.SUBSCRIBE, 0, m.u16(1) + b"\x00" + m.utf8("a") + b"\x00"), {MALFORMED}),
        ("pubrel_flags_0", V311, m.packet(m.PUBREL, 0, m.u16(1)), None),
        # Packet type 0 is reserved (§2.1.2).
        ("reserved_packet_type_0", V311, m.packet(0, 0, b""), None),
        ("reserved_packet_type_0", V5, m.packet(0, 0, b""), {MALFORMED, PROTOCOL}),
        # [MQTT-3.8.3-3] (3.1.1) / [MQTT-3.8.3-2] (5.0): SUBSCRIBE without any
        # filter; [MQTT-3.10.3-2]: UNSUBSCRIBE without any.
        ("subscribe_without_filters", V311, m.packet(m.SUBSCRIBE, 2, m.u16(1)), None),
        ("subscribe_without_filters", V5, m.packet(m.SUBSCRIBE, 2, m.u16(1) + b"\x00"), {PROTOCOL}),
        ("unsubscribe_without_filters", V311, m.packet(m.UNSUBSCRIBE, 2, m.u16(1)), None),
        # [MQTT-3.8.3-4] (3.1.1) / [MQTT-3.8.3-5] (5.0): reserved bits of the
        # requested QoS / subscription options byte.
        ("subscribe_reserved_option_bits", V311, m.subscribe(1, [("a", 0x04)]), None),
        ("subscribe_reserved_option_bits", V5, m.subscribe(1, [("a", 0xC0)], V5), {MALFORMED}),
        # 5.0 §3.8.3.1: Maximum QoS 3 and Retain Handling 3 are Protocol
        # Errors.
        ("subscribe_qos_3", V5, m.subscribe(1, [("a", 0x03)], V5), {PROTOCOL}),
        ("subscribe_retain_handling_3", V5, m.subscribe(1, [("a", 0x30)], V5), {PROTOCOL}),
        # 5.0 §2.2.2.2 / §3.3.2.3: a property included twice is a Protocol
        # Error.
        ("duplicate_property", V5,
         _publish_raw(topic, version=V5, props=m.properties([(m.MESSAGE_EXPIRY, 5), (m.MESSAGE_EXPIRY, 6)])),
         {PROTOCOL}),
        ("duplicate_property_payload_format", V5,
         _publish_raw(topic, version=V5, props=m.properties([(m.PAYLOAD_FORMAT, 0), (m.PAYLOAD_FORMAT, 0)])),
         {PROTOCOL}),
        # 5.0 §2.2.2.2: a property not valid for the packet type (Session
        # Expiry in a PUBLISH) or an unknown identifier is a Malformed Packet.
        ("property_not_allowed", V5,
         _publish_raw(topic, version=V5, props=m.properties([(m.SESSION_EXPIRY, 5)])), {MALFORMED}),
        ("unknown_property", V5, _publish_raw(topic, version=V5, props=b"\x02\x7f\x00"), {MALFORMED}),
        # A property list longer than the packet.
        ("property_length_past_the_end", V5, _publish_raw(topic, version=V5, props=b"\x20" + v5_props_ok[1:]),
         {MALFORMED}),
        # §3.12.1 / §3.14.1: PINGREQ and a 3.1.1 DISCONNECT have no body.
        ("pingreq_with_a_body", V311, m.packet(m.PINGREQ, 0, b"\x00"), None),
        ("pingreq_with_a_body", V5, m.packet(m.PINGREQ, 0, b"\x00"), {MALFORMED}),
        ("disconnect_with_a_body", V311, m.packet(m.DISCONNECT, 0, b"\x00"), None),
        # Packets only a server sends (CONNACK, SUBACK) are protocol errors
        # from a client.
        ("connack_from_a_client", V311, m.packet(m.CONNACK, 0, b"\x00\x00"), None),
        ("suback_from_a_client", V5, m.packet(m.SUBACK, 0, m.u16(1) + b"\x00\x00"), {MALFORMED, PROTOCOL}),
        # [MQTT-4.7.3-1]: a topic filter is at least one character;
        # [MQTT-4.7.1-3]: "+" fills a whole level.
        ("empty_filter", V311, m.subscribe(1, [("", 0)]), None),
        ("plus_inside_a_level", V311, m.subscribe(1, [("a/b+", 0)]), None),
        # [MQTT-4.7.3-1]: a topic name is at least one character.
        ("empty_topic_name", V311, m.publish("", b"x"), None),
        # 5.0 §3.3.2.3.2: Payload Format Indicator 1 with a payload that is
        # not UTF-8 may be refused (0x99 Payload format invalid), or passed.
        # Not asserted here: the broker may forward it.
    ]


CASES = _cases()


@pytest.fixture
def bystander(client, uid):
    """A connection that must keep working while another is closed."""
    b = client(V5)
    b.connect(uid + "-bystander")
    b.subscribe(f"{uid}/alive", qos=1)
    return b


@pytest.mark.parametrize(
    "name, version, data, codes",
    CASES,
    ids=[f"{c[0]}-{'v5' if c[1] == V5 else 'v311'}" for c in CASES],
)
def test_08_malformed_closes_only_that_connection(client, uid, bystander, name, version, data, codes):
    c = client(version)
    c.connect(uid)
    c.send(data)
    got = c.expect_closed()
    if version == V5:
        assert len(got) == 1 and got[0].type == m.DISCONNECT, f"{name}: {got}"
        assert got[0].reason in codes, f"{name}: DISCONNECT {got[0].reason:#x}, expected one of {codes}"
    else:
        assert got == [], f"{name}: {got}"
    # The other connection is untouched.
    bystander.publish(f"{uid}/alive", b"still here", qos=1)
    assert bystander.receive().payload == b"still here"


def test_08_malformed_connect_invalid_utf8_client_id(client):
    # [MQTT-1.5.3-1]: ill-formed UTF-8 in the CONNECT (client id) closes the
    # connection without a successful CONNACK.
    c = client(V311)
    c.send(m.packet(m.CONNECT, 0, m.utf8("MQTT") + bytes([4, 2]) + m.u16(60) + m.utf8(b"\xff\xfe")))
    got = c.expect_closed()
    assert not any(p.type == m.CONNACK and p.reason == 0 for p in got), got


def test_08_malformed_connect_truncated(client):
    # A CONNECT whose fields run past its remaining length is malformed: the
    # connection closes with no successful CONNACK.
    c = client(V311)
    c.send(m.packet(m.CONNECT, 0, m.utf8("MQTT") + bytes([4, 2]) + m.u16(60) + m.u16(10) + b"abc"))
    got = c.expect_closed()
    assert not any(p.type == m.CONNACK and p.reason == 0 for p in got), got


def test_08_malformed_partial_packet_then_close_publishes_nothing(client, uid, bystander):
    # A connection dropped in the middle of a PUBLISH routes nothing of it;
    # the bystander's next message is the first it sees.
    c = client(V311)
    c.connect(uid)
    whole = m.publish(f"{uid}/alive", b"half", qos=0)
    c.send(whole[:-2])
    c.close()
    bystander.publish(f"{uid}/alive", b"marker", qos=1)
    assert bystander.receive().payload == b"marker"
