"""A small, independent MQTT 3.1 / 3.1.1 / 5.0 packet builder and parser for
the raw-packet conformance tests (stdlib only: socket and struct).

It is written from the OASIS specifications, not from the Rust codec, so the
tests check the codec as well as the broker. Builders return the packet's
bytes; `Client` wraps a socket and parses what the broker sends.
"""

import socket
import struct
import time

# Control packet types (MQTT §2.1.2).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP = 8, 9, 10, 11, 12, 13
DISCONNECT, AUTH = 14, 15

TYPE_NAMES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
    7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
    12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH",
}

# Protocol levels.
V31, V311, V5 = 3, 4, 5

# MQTT 5.0 property identifiers (§2.2.2.2) and their value types.
PAYLOAD_FORMAT = 0x01
MESSAGE_EXPIRY = 0x02
CONTENT_TYPE = 0x03
RESPONSE_TOPIC = 0x08
CORRELATION_DATA = 0x09
SUBSCRIPTION_ID = 0x0B
SESSION_EXPIRY = 0x11
ASSIGNED_CLIENT_ID = 0x12
SERVER_KEEP_ALIVE = 0x13
AUTH_METHOD = 0x15
AUTH_DATA = 0x16
REQUEST_PROBLEM_INFO = 0x17
WILL_DELAY = 0x18
REQUEST_RESPONSE_INFO = 0x19
RESPONSE_INFO = 0x1A
SERVER_REFERENCE = 0x1C
REASON_STRING = 0x1F
RECEIVE_MAXIMUM = 0x21
TOPIC_ALIAS_MAXIMUM = 0x22
TOPIC_ALIAS = 0x23
MAXIMUM_QOS = 0x24
RETAIN_AVAILABLE = 0x25
USER_PROPERTY = 0x26
MAXIMUM_PACKET_SIZE = 0x27
WILDCARD_SUB_AVAILABLE = 0x28
SUB_ID_AVAILABLE = 0x29
SHARED_SUB_AVAILABLE = 0x2A

_BYTE, _U16, _U32, _VARINT, _STR, _BIN, _PAIR = range(7)
PROPERTY_TYPES = {
    PAYLOAD_FORMAT: _BYTE, MESSAGE_EXPIRY: _U32, CONTENT_TYPE: _STR,
    RESPONSE_TOPIC: _STR, CORRELATION_DATA: _BIN, SUBSCRIPTION_ID: _VARINT,
    SESSION_EXPIRY: _U32, ASSIGNED_CLIENT_ID: _STR, SERVER_KEEP_ALIVE: _U16,
    AUTH_METHOD: _STR, AUTH_DATA: _BIN, REQUEST_PROBLEM_INFO: _BYTE,
    WILL_DELAY: _U32, REQUEST_RESPONSE_INFO: _BYTE, RESPONSE_INFO: _STR,
    SERVER_REFERENCE: _STR, REASON_STRING: _STR, RECEIVE_MAXIMUM: _U16,
    TOPIC_ALIAS_MAXIMUM: _U16, TOPIC_ALIAS: _U16, MAXIMUM_QOS: _BYTE,
    RETAIN_AVAILABLE: _BYTE, USER_PROPERTY: _PAIR, MAXIMUM_PACKET_SIZE: _U32,
    WILDCARD_SUB_AVAILABLE: _BYTE, SUB_ID_AVAILABLE: _BYTE,
    SHARED_SUB_AVAILABLE: _BYTE,
}

# Reason codes used by the tests (MQTT 5.0 §2.4; 3.1.1 CONNACK return codes).
RC_SUCCESS = 0x00
RC_GRANTED_QOS1 = 0x01
RC_GRANTED_QOS2 = 0x02
RC_DISCONNECT_WITH_WILL = 0x04
RC_NO_MATCHING_SUBSCRIBERS = 0x10
RC_NO_SUBSCRIPTION_EXISTED = 0x11
RC_UNSPECIFIED = 0x80
RC_MALFORMED = 0x81
RC_PROTOCOL_ERROR = 0x82
RC_UNSUPPORTED_PROTOCOL_VERSION = 0x84
RC_CLIENT_ID_NOT_VALID = 0x85
RC_KEEP_ALIVE_TIMEOUT = 0x8D
RC_SESSION_TAKEN_OVER = 0x8E
RC_TOPIC_FILTER_INVALID = 0x8F
RC_TOPIC_NAME_INVALID = 0x90
RC_RECEIVE_MAXIMUM_EXCEEDED = 0x93
RC_TOPIC_ALIAS_INVALID = 0x94
RC_PACKET_TOO_LARGE = 0x95
RC_SHARED_SUB_NOT_SUPPORTED = 0x9E
# MQTT 3.1 / 3.1.1 CONNACK return codes (§3.2.2.3).
CONNACK_UNACCEPTABLE_PROTOCOL = 0x01
CONNACK_IDENTIFIER_REJECTED = 0x02


# ---------------------------------------------------------------- encoding


def varint(n):
    """Variable Byte Integer (§1.5.5 / §2.2.3)."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(f"varint out of range: {n}")
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def u16(n):
    return struct.pack("!H", n)


def u32(n):
    return struct.pack("!I", n)


def utf8(s):
    """UTF-8 Encoded String: 2-byte length then bytes; `s` may be raw bytes
    (to send invalid encodings on purpose)."""
    data = s if isinstance(s, bytes) else s.encode("utf-8")
    return u16(len(data)) + data


def binary(b):
    return u16(len(b)) + bytes(b)


def properties(props):
    """A property list from (identifier, value) pairs, in order, duplicates
    kept (a test may want an invalid list)."""
    body = bytearray()
    for pid, value in props or ():
        body += varint(pid)
        kind = PROPERTY_TYPES[pid]
        if kind == _BYTE:
            body.append(value)
        elif kind == _U16:
            body += u16(value)
        elif kind == _U32:
            body += u32(value)
        elif kind == _VARINT:
            body += varint(value)
        elif kind == _STR:
            body += utf8(value)
        elif kind == _BIN:
            body += binary(value)
        else:
            body += utf8(value[0]) + utf8(value[1])
    return varint(len(body)) + bytes(body)


def packet(ptype, flags, body):
    """A whole control packet: fixed header (type, flags, remaining length)
    then `body`."""
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + bytes(body)


def connect(
    client_id="",
    version=V311,
    clean=True,
    keep_alive=60,
    will=None,
    username=None,
    password=None,
    props=None,
    protocol_name=None,
    reserved_flag=False,
    flags_override=None,
):
    """CONNECT (§3.1). `will` is a dict: topic, payload, qos, retain, props."""
    name = protocol_name if protocol_name is not None else ("MQIsdp" if version == V31 else "MQTT")
    flags = 0x01 if reserved_flag else 0
    if clean:
        flags |= 0x02
    if will is not None:
        flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
    if password is not None:
        flags |= 0x40
    if username is not None:
        flags |= 0x80
    if flags_override is not None:
        flags = flags_override
    body = utf8(name) + bytes([version, flags]) + u16(keep_alive)
    if version == V5:
        body += properties(props)
    body += utf8(client_id)
    if will is not None:
        if version == V5:
            body += properties(will.get("props"))
        body += utf8(will["topic"]) + binary(will.get("payload", b""))
    if username is not None:
        body += utf8(username)
    if password is not None:
        body += binary(password)
    return packet(CONNECT, 0, body)


def publish(topic, payload=b"", qos=0, retain=False, dup=False, pid=None, version=V311, props=None):
    """PUBLISH (§3.3). `qos` may be 3 to build an invalid packet; `pid` is
    required for QoS > 0."""
    flags = (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = utf8(topic)
    if qos > 0:
        body += u16(pid)
    if version == V5:
        body += properties(props)
    return packet(PUBLISH, flags, body + bytes(payload))


def ack(ptype, pid, version=V311, reason=None, props=None):
    """PUBACK, PUBREC, PUBREL or PUBCOMP (§3.4-3.7); PUBREL has flags 0b0010."""
    flags = 0x02 if ptype == PUBREL else 0
    body = u16(pid)
    if version == V5 and (reason is not None or props):
        body += bytes([reason or 0])
        if props:
            body += properties(props)
    return packet(ptype, flags, body)


def sub_options(qos=0, no_local=False, retain_as_published=False, retain_handling=0):
    """The MQTT 5 subscription options byte (§3.8.3.1)."""
    return qos | (0x04 if no_local else 0) | (0x08 if retain_as_published else 0) | (retain_handling << 4)


def subscribe(pid, filters, version=V311, props=None):
    """SUBSCRIBE (§3.8): `filters` is a list of (filter, options byte)."""
    body = u16(pid)
    if version == V5:
        body += properties(props)
    for f, opts in filters:
        body += utf8(f) + bytes([opts])
    return packet(SUBSCRIBE, 0x02, body)


def unsubscribe(pid, filters, version=V311, props=None):
    """UNSUBSCRIBE (§3.10)."""
    body = u16(pid)
    if version == V5:
        body += properties(props)
    for f in filters:
        body += utf8(f)
    return packet(UNSUBSCRIBE, 0x02, body)


def pingreq():
    return packet(PINGREQ, 0, b"")


def disconnect(version=V311, reason=None, props=None):
    """DISCONNECT (§3.14)."""
    body = b""
    if version == V5 and (reason is not None or props):
        body = bytes([reason or 0]) + (properties(props) if props else b"")
    return packet(DISCONNECT, 0, body)


# ---------------------------------------------------------------- decoding


class Malformed(Exception):
    """The broker sent bytes this parser cannot read as MQTT."""


class Reader:
    """Reads fields from a packet body, failing loudly on a short body."""

    def __init__(self, data):
        self.data = bytes(data)
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise Malformed(f"body too short: need {n} at {self.pos} of {len(self.data)}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def byte(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack("!H", self.take(2))[0]

    def u32(self):
        return struct.unpack("!I", self.take(4))[0]

    def varint(self):
        value, mult = 0, 1
        for _ in range(4):
            b = self.byte()
            value += (b & 0x7F) * mult
            if not b & 0x80:
                return value
            mult *= 128
        raise Malformed("variable byte integer longer than 4 bytes")

    def utf8(self):
        raw = self.take(self.u16())
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Malformed(f"invalid UTF-8 from the broker: {raw!r}") from e
        if "\x00" in text:
            raise Malformed("U+0000 in a string from the broker")
        return text

    def binary(self):
        return self.take(self.u16())

    def rest(self):
        out = self.data[self.pos:]
        self.pos = len(self.data)
        return out

    def at_end(self):
        return self.pos >= len(self.data)

    def properties(self):
        """A property list as (identifier, value) pairs, in order."""
        length = self.varint()
        sub = Reader(self.take(length))
        out = []
        while not sub.at_end():
            pid = sub.varint()
            kind = PROPERTY_TYPES.get(pid)
            if kind is None:
                raise Malformed(f"unknown property 0x{pid:02x}")
            if kind == _BYTE:
                v = sub.byte()
            elif kind == _U16:
                v = sub.u16()
            elif kind == _U32:
                v = sub.u32()
            elif kind == _VARINT:
                v = sub.varint()
            elif kind == _STR:
                v = sub.utf8()
            elif kind == _BIN:
                v = sub.binary()
            else:
                v = (sub.utf8(), sub.utf8())
            out.append((pid, v))
        return Props(out)


class Props(list):
    """A parsed property list with look-up helpers."""

    def get(self, pid, default=None):
        for k, v in self:
            if k == pid:
                return v
        return default

    def all(self, pid):
        return [v for k, v in self if k == pid]


class Packet:
    """A parsed control packet. Fields depend on the type: see `parse`."""

    def __init__(self, ptype, flags, raw):
        self.type = ptype
        self.flags = flags
        self.raw = raw
        self.props = Props()
        self.reason = None
        self.pid = None

    def __repr__(self):
        fields = {k: v for k, v in vars(self).items() if k not in ("raw", "type", "flags") and v not in (None, [], b"")}
        return f"<{TYPE_NAMES.get(self.type, self.type)} {fields}>"


def parse(ptype, flags, body, version):
    """Parses one packet body as the broker sends it at `version`."""
    p = Packet(ptype, flags, body)
    r = Reader(body)
    v5 = version == V5
    if ptype == CONNACK:
        ack_flags = r.byte()
        if ack_flags & 0xFE:
            raise Malformed(f"CONNACK reserved flags set: {ack_flags:#x}")
        p.session_present = bool(ack_flags & 1)
        p.reason = r.byte()
        if v5 and not r.at_end():
            p.props = r.properties()
    elif ptype == PUBLISH:
        p.dup = bool(flags & 0x08)
        p.qos = (flags >> 1) & 3
        p.retain = bool(flags & 1)
        if p.qos == 3:
            raise Malformed("PUBLISH with QoS 3 from the broker")
        p.topic = r.utf8()
        if p.qos:
            p.pid = r.u16()
        if v5:
            p.props = r.properties()
        p.payload = r.rest()
    elif ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        expected = 0x02 if ptype == PUBREL else 0
        if flags != expected:
            raise Malformed(f"{TYPE_NAMES[ptype]} flags {flags:#x}")
        p.pid = r.u16()
        p.reason = 0
        if v5 and not r.at_end():
            p.reason = r.byte()
            if not r.at_end():
                p.props = r.properties()
    elif ptype in (SUBACK, UNSUBACK):
        p.pid = r.u16()
        if v5:
            p.props = r.properties()
        p.codes = list(r.rest())
    elif ptype == PINGRESP:
        pass
    elif ptype == DISCONNECT:
        p.reason = 0
        if not r.at_end():
            p.reason = r.byte()
            if not r.at_end():
                p.props = r.properties()
    else:
        raise Malformed(f"unexpected packet type {ptype} from the broker")
    if not r.at_end():
        raise Malformed(f"{TYPE_NAMES[ptype]} has {len(body) - r.pos} trailing bytes")
    return p


# ---------------------------------------------------------------- a client


class Closed(Exception):
    """The broker closed the connection."""


class Client:
    """A raw TCP connection to the broker speaking `version`."""

    def __init__(self, addr, version=V311, timeout=3.0):
        self.version = version
        self.timeout = timeout
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.next_pid = 0
        # QoS 2 messages received and PUBREC'd whose PUBREL is still due.
        self.awaiting_rel = set()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def pid(self):
        self.next_pid = self.next_pid % 65535 + 1
        return self.next_pid

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no packet from the broker in time")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout as e:
            raise TimeoutError("no packet from the broker in time") from e
        except ConnectionResetError as e:
            raise Closed("connection reset") from e
        if not chunk:
            raise Closed("connection closed by the broker")
        self.buf += chunk

    def recv(self, timeout=None):
        """The next packet, parsed; `TimeoutError` if none comes in time,
        `Closed` if the broker closes the connection."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if len(self.buf) >= 2:
                value, mult, i = 0, 1, 1
                complete = False
                while i < len(self.buf) and i <= 4:
                    b = self.buf[i]
                    value += (b & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not b & 0x80:
                        complete = True
                        break
                if not complete and i > 4:
                    raise Malformed("remaining length longer than 4 bytes")
                if complete and len(self.buf) >= i + value:
                    first = self.buf[0]
                    body = bytes(self.buf[i:i + value])
                    del self.buf[:i + value]
                    return parse(first >> 4, first & 0x0F, body, self.version)
            self._fill(deadline)

    def expect(self, ptype, timeout=None):
        """The next packet, which must be of type `ptype`. A PUBREL for a
        QoS 2 message `receive` took is answered with PUBCOMP on the way."""
        while True:
            p = self.recv(timeout)
            if p.type == PUBREL and ptype != PUBREL and p.pid in self.awaiting_rel:
                self.awaiting_rel.discard(p.pid)
                self.send(ack(PUBCOMP, p.pid, self.version))
                continue
            assert p.type == ptype, f"expected {TYPE_NAMES[ptype]}, got {p!r}"
            if p.type == PUBREL:
                self.awaiting_rel.discard(p.pid)
            return p

    def expect_closed(self, timeout=None):
        """Reads until the broker closes the connection; returns the packets
        it sent before closing. Fails if the connection stays open."""
        got = []
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                got.append(self.recv(max(0.0, deadline - time.monotonic())))
            except Closed:
                return got
            except TimeoutError as e:
                raise AssertionError(f"the broker did not close the connection; it sent {got!r}") from e

    def expect_nothing(self, within=0.3):
        """Asserts that no packet arrives for `within` seconds (used only to
        check an absence, after a positive condition was already met)."""
        deadline = time.monotonic() + within
        while True:
            try:
                p = self.recv(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return
            if p.type == PUBREL and p.pid in self.awaiting_rel:
                self.awaiting_rel.discard(p.pid)
                self.send(ack(PUBCOMP, p.pid, self.version))
                continue
            raise AssertionError(f"unexpected packet {p!r}")

    def connect(self, client_id="", clean=True, keep_alive=60, expect_rc=0, **kw):
        """CONNECT and its CONNACK, which must carry `expect_rc`."""
        self.send(connect(client_id, version=self.version, clean=clean, keep_alive=keep_alive, **kw))
        ack_ = self.expect(CONNACK)
        assert ack_.reason == expect_rc, f"CONNACK {ack_.reason:#x}, expected {expect_rc:#x}: {ack_!r}"
        return ack_

    def subscribe(self, *filters, qos=0, props=None, options=None):
        """SUBSCRIBE to `filters` (all at `qos`, or with explicit `options`
        bytes) and return the SUBACK codes."""
        pid = self.pid()
        opts = options if options is not None else [qos] * len(filters)
        self.send(subscribe(pid, list(zip(filters, opts)), self.version, props))
        s = self.expect(SUBACK)
        assert s.pid == pid, f"SUBACK for {s.pid}, expected {pid}"
        return s.codes

    def unsubscribe(self, *filters):
        pid = self.pid()
        self.send(unsubscribe(pid, list(filters), self.version))
        u = self.expect(UNSUBACK)
        assert u.pid == pid
        return u.codes

    def publish(self, topic, payload=b"", qos=0, retain=False, props=None):
        """PUBLISH and complete the flow (PUBACK, or PUBREC/PUBREL/PUBCOMP);
        returns the acknowledgement's reason code (None at QoS 0)."""
        pid = self.pid() if qos else None
        self.send(publish(topic, payload, qos, retain, pid=pid, version=self.version, props=props))
        if qos == 0:
            return None
        if qos == 1:
            a = self.expect(PUBACK)
            assert a.pid == pid
            return a.reason
        rec = self.expect(PUBREC)
        assert rec.pid == pid
        self.send(ack(PUBREL, pid, self.version))
        comp = self.expect(PUBCOMP)
        assert comp.pid == pid
        return rec.reason

    def receive(self, timeout=None):
        """The next application message (PUBLISH), acknowledged as the
        protocol asks (QoS 2: PUBREC now, PUBCOMP when its PUBREL comes, see
        `expect`)."""
        p = self.expect(PUBLISH, timeout)
        if p.qos == 1:
            self.send(ack(PUBACK, p.pid, self.version))
        elif p.qos == 2:
            self.send(ack(PUBREC, p.pid, self.version))
            self.awaiting_rel.add(p.pid)
        return p

    def ping(self):
        self.send(pingreq())
        self.expect(PINGRESP)

    def disconnect(self, reason=None, props=None):
        self.send(disconnect(self.version, reason, props))
        self.close()
