"""Keep-alive (3.1.1 §3.1.2.10, 5.0 §3.1.2.10 and §3.2.2.3.14)."""

import time

import mqttpkt as m
from mqttpkt import V311, V5


def test_05_keepalive_expiry_311(client, uid):
    # [MQTT-3.1.2-24] (3.1.1): with keep-alive 1 and no packets from the
    # client, the broker closes the connection after one and a half times
    # the keep-alive (1.5 s), not before the keep-alive itself.
    c = client(V311)
    c.connect(uid, keep_alive=1)
    t0 = time.monotonic()
    assert c.expect_closed(timeout=4) == []
    elapsed = time.monotonic() - t0
    assert 1.0 <= elapsed <= 2.3, f"closed after {elapsed:.2f} s"


def test_05_keepalive_expiry_v5(client, uid):
    # [MQTT-3.1.2-22] (5.0): the same at MQTT 5, where the broker says why:
    # DISCONNECT 0x8D Keep Alive timeout.
    c = client(V5)
    ack = c.connect(uid, keep_alive=1)
    assert ack.props.get(m.SERVER_KEEP_ALIVE) in (None, 1)
    t0 = time.monotonic()
    got = c.expect_closed(timeout=4)
    elapsed = time.monotonic() - t0
    assert [(p.type, p.reason) for p in got] == [(m.DISCONNECT, m.RC_KEEP_ALIVE_TIMEOUT)], got
    assert 1.0 <= elapsed <= 2.3, f"closed after {elapsed:.2f} s"


def test_05_keepalive_any_packet_keeps_the_connection(client, uid):
    # [MQTT-3.1.2-24] (3.1.1): any control packet resets the keep-alive
    # timer, not only PINGREQ; [MQTT-3.12.4-1]: PINGREQ gets PINGRESP.
    c = client(V311)
    c.connect(uid, keep_alive=1)
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 1.9:
        # Each turn waits 0.6 s for the broker to close (it must not), then
        # sends a packet: QoS 0 PUBLISH and PINGREQ in turn.
        c.expect_nothing(0.6)
        if n % 2:
            c.ping()
        else:
            c.send(m.publish(f"{uid}/ka", b"x"))
        n += 1
    c.ping()
