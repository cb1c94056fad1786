"""Limits: a listener started with `--max-packet-size 1024` (MQTT 5.0
§3.2.2.3.6 Maximum Packet Size, §4.13 reason 0x95 Packet too large)."""

import pytest

import mqttpkt as m
from mqttpkt import V311, V5

LIMIT = 1024


@pytest.fixture(scope="module")
def small(start_listener):
    return start_listener("--max-packet-size", str(LIMIT))


def test_09_limits_maximum_packet_size_announced(small, client, uid):
    # 5.0 §3.2.2.3.6: the broker announces its Maximum Packet Size in
    # CONNACK; [MQTT-3.2.2-15]: clients must not exceed it.
    c = client(V5, addr=small.addr)
    ack = c.connect(uid)
    assert ack.props.get(m.MAXIMUM_PACKET_SIZE) == LIMIT


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_09_limits_packet_too_large(small, client, uid, version):
    # §4.13 (5.0): a packet over the broker's Maximum Packet Size closes the
    # connection with DISCONNECT 0x95 Packet too large (3.1.1: just closed);
    # a packet of exactly the limit passes; the other connections go on.
    bystander = client(V311, addr=small.addr)
    bystander.connect(uid + "-b")
    bystander.subscribe(f"{uid}/t", qos=1)
    c = client(version, addr=small.addr)
    c.connect(uid)
    header_and_topic = len(m.publish(f"{uid}/t", b"", qos=1, pid=1, version=version))
    fits = b"f" * (LIMIT - header_and_topic - 1)  # remaining length grows by 1 byte past 127
    packet = m.publish(f"{uid}/t", fits, qos=1, pid=1, version=version)
    while len(packet) < LIMIT:
        fits += b"f"
        packet = m.publish(f"{uid}/t", fits, qos=1, pid=1, version=version)
    assert len(packet) == LIMIT
    c.send(packet)
    assert c.expect(m.PUBACK).pid == 1
    assert bystander.receive().payload == fits
    c.send(m.publish(f"{uid}/t", fits + b"x", qos=1, pid=2, version=version))
    got = c.expect_closed()
    if version == V5:
        assert [(p.type, p.reason) for p in got] == [(m.DISCONNECT, m.RC_PACKET_TOO_LARGE)], got
    else:
        assert got == []
    bystander.publish(f"{uid}/t", b"alive", qos=1)
    assert bystander.receive().payload == b"alive"


def test_09_limits_oversized_length_refused_from_the_header(small, client, uid):
    # The broker refuses a packet from its fixed header alone: a remaining
    # length of 200 MB closes the connection (5.0: 0x95) without the broker
    # waiting for (or buffering) the body.
    c = client(V5, addr=small.addr)
    c.connect(uid)
    c.send(bytes([0x30]) + m.varint(200_000_000))
    got = c.expect_closed()
    assert [(p.type, p.reason) for p in got] == [(m.DISCONNECT, m.RC_PACKET_TOO_LARGE)], got


def test_09_limits_oversized_connect(small, client, uid):
    # A CONNECT over the limit is refused: the connection closes without a
    # successful CONNACK.
    c = client(V5, addr=small.addr)
    c.send(m.connect(uid, version=V5, props=[(m.USER_PROPERTY, ("k", "v" * 2000))]))
    got = c.expect_closed()
    assert not any(p.type == m.CONNACK and p.reason == 0 for p in got), got
