"""paho-mqtt 2.2 clients (CallbackAPIVersion.VERSION2) at MQTT 3.1.1 and 5
against the myqtt listener."""

import queue

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

TIMEOUT = 10.0
V311, V5 = mqtt.MQTTv311, mqtt.MQTTv5
PROTOCOLS = pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])


class Paho:
    """A paho client on its own network thread; what its callbacks report
    lands in queues the test waits on with a timeout."""

    def __init__(self, listener, client_id, protocol, clean=True, will=None, props=None):
        self.protocol = protocol
        kwargs = {"client_id": client_id, "protocol": protocol}
        if protocol != V5:
            kwargs["clean_session"] = clean
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, **kwargs)
        self.connacks = queue.Queue()
        self.subacks = queue.Queue()
        self.messages = queue.Queue()
        self.disconnects = queue.Queue()
        self.client.on_connect = lambda c, u, flags, rc, p: self.connacks.put((flags, rc, p))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put((mid, rcs))
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.client.on_disconnect = lambda c, u, flags, rc, p: self.disconnects.put(rc)
        if will is not None:
            self.client.will_set(**will)
        connect_kwargs = {"keepalive": 30}
        if protocol == V5:
            connect_kwargs["clean_start"] = clean
            if props is not None:
                connect_kwargs["properties"] = props
        self.client.connect(listener.host, listener.port, **connect_kwargs)
        self.client.loop_start()
        flags, rc, self.connack_props = self.connacks.get(timeout=TIMEOUT)
        assert not rc.is_failure, f"CONNACK {rc}"
        self.session_present = flags.session_present

    def subscribe(self, topic, qos=0, options=None, props=None):
        """Subscribes and waits for the SUBACK; the granted QoS values."""
        if self.protocol == V5:
            spec = options or SubscribeOptions(qos=qos)
            result, mid = self.client.subscribe(topic, options=spec, properties=props)
        else:
            result, mid = self.client.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS
        got_mid, codes = self.subacks.get(timeout=TIMEOUT)
        assert got_mid == mid
        return [c.value for c in codes]

    def publish(self, topic, payload, qos=0, retain=False, props=None):
        """Publishes and waits until the flow completed (PUBACK / PUBCOMP)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        info.wait_for_publish(timeout=TIMEOUT)
        assert info.is_published(), f"publish to {topic} not acknowledged"
        return info

    def next_message(self, timeout=TIMEOUT):
        return self.messages.get(timeout=timeout)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self):
        """Closes the socket without DISCONNECT (an abnormal close)."""
        self.client.loop_stop()
        self.client.socket().close()


@pytest.fixture
def paho(myqtt_listener):
    made = []

    def make(client_id, protocol, **kw):
        c = Paho(myqtt_listener, client_id, protocol, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        try:
            c.close()
        except Exception:  # already dropped
            pass


@PROTOCOLS
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_11_paho_pub_sub(paho, uid, protocol, qos):
    # Connect, subscribe (granted QoS [MQTT-3.8.4-6]), publish at QoS 0/1/2
    # with the flow completed (wait_for_publish), and receive at that QoS.
    sub = paho(uid + "-s", protocol)
    assert sub.subscribe(f"paho/{uid}", qos=2) == [2]
    pub = paho(uid + "-p", protocol)
    for i in range(3):
        pub.publish(f"paho/{uid}", f"m{i}".encode(), qos=qos)
    got = [sub.next_message() for _ in range(3)]
    assert [(g.topic, g.payload, g.qos, g.retain) for g in got] == [
        (f"paho/{uid}", f"m{i}".encode(), qos, False) for i in range(3)
    ]


@PROTOCOLS
def test_11_paho_retained(paho, uid, protocol):
    # [MQTT-3.3.1-5] / [MQTT-3.3.1-8]: a retained message reaches a later
    # subscriber flagged retained; [MQTT-3.3.1-10]: an empty one clears it.
    topic = f"paho/{uid}/r"
    pub = paho(uid + "-p", protocol)
    pub.publish(topic, b"kept", qos=1, retain=True)
    sub = paho(uid + "-s", protocol)
    sub.subscribe(topic, qos=1)
    got = sub.next_message()
    assert (got.payload, got.retain, got.qos) == (b"kept", True, 1)
    pub.publish(topic, b"", qos=1, retain=True)
    assert sub.next_message().payload == b""  # the clearing message, live
    late = paho(uid + "-l", protocol)
    late.subscribe(topic, qos=1)
    pub.publish(topic, b"live", qos=1)
    got = late.next_message()
    assert (got.payload, got.retain) == (b"live", False)


@PROTOCOLS
def test_11_paho_will(paho, uid, protocol):
    # [MQTT-3.1.2-8]: the will of a client whose connection drops without
    # DISCONNECT is published; [MQTT-3.1.2-10]: not that of one that
    # disconnects normally.
    topic = f"paho/{uid}/will"
    watcher = paho(uid + "-w", protocol)
    watcher.subscribe(f"{topic}/#", qos=1)
    props = None
    if protocol == V5:
        props = Properties(PacketTypes.WILLMESSAGE)
        props.UserProperty = [("why", "dropped")]
    polite = paho(uid + "-polite", protocol, will={"topic": f"{topic}/polite", "payload": b"no", "qos": 1})
    polite.close()
    doomed = paho(uid + "-doomed", protocol,
                  will={"topic": f"{topic}/doomed", "payload": b"died", "qos": 1, "properties": props})
    doomed.drop()
    got = watcher.next_message()
    assert (got.topic, got.payload, got.qos) == (f"{topic}/doomed", b"died", 1)
    if protocol == V5:
        assert got.properties.UserProperty == [("why", "dropped")]
    marker = paho(uid + "-m", protocol)
    marker.publish(f"{topic}/marker", b"m", qos=1)
    assert watcher.next_message().topic == f"{topic}/marker"  # no polite will


def test_11_paho_v5_properties_round_trip(paho, uid):
    # A request/response exchange with MQTT 5 properties: the broker forwards
    # user properties (in order, [MQTT-3.3.2-18]), content type, payload
    # format, response topic and correlation data unchanged, the message
    # expiry counted down, and the subscription identifier of the match.
    requests = f"paho/{uid}/req"
    responder = paho(uid + "-resp", V5)
    sub_props = Properties(PacketTypes.SUBSCRIBE)
    sub_props.SubscriptionIdentifier = 77
    responder.subscribe(requests, qos=1, props=sub_props)
    requester = paho(uid + "-req", V5)
    requester.subscribe(f"paho/{uid}/reply", qos=1)

    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("b", "2"), ("a", "1"), ("b", "3")]
    props.ContentType = "application/json"
    props.PayloadFormatIndicator = 1
    props.ResponseTopic = f"paho/{uid}/reply"
    props.CorrelationData = b"\x01\x02corr"
    props.MessageExpiryInterval = 120
    requester.publish(requests, b'{"q": 1}', qos=1, props=props)

    req = responder.next_message()
    p = req.properties
    assert p.UserProperty == [("b", "2"), ("a", "1"), ("b", "3")]
    assert (p.ContentType, p.PayloadFormatIndicator) == ("application/json", 1)
    assert (p.ResponseTopic, p.CorrelationData) == (f"paho/{uid}/reply", b"\x01\x02corr")
    assert 118 <= p.MessageExpiryInterval <= 120
    assert p.SubscriptionIdentifier == [77]

    reply_props = Properties(PacketTypes.PUBLISH)
    reply_props.CorrelationData = p.CorrelationData
    responder.publish(p.ResponseTopic, b'{"a": 2}', qos=1, props=reply_props)
    reply = requester.next_message()
    assert (reply.payload, reply.properties.CorrelationData) == (b'{"a": 2}', b"\x01\x02corr")


def test_11_paho_v5_assigned_client_id(paho):
    # [MQTT-3.2.2-16] (5.0): an empty client id is given an Assigned Client
    # Identifier in CONNACK.
    c = paho("", V5)
    assigned = getattr(c.connack_props, "AssignedClientIdentifier", None)
    assert assigned, c.connack_props


def test_11_paho_v5_no_local(paho, uid):
    # [MQTT-3.8.3-3] (5.0): No Local keeps a client's own messages from it.
    topic = f"paho/{uid}/nl"
    c = paho(uid, V5)
    c.subscribe(topic, options=SubscribeOptions(qos=1, noLocal=True))
    other = paho(uid + "-o", V5)
    c.publish(topic, b"own", qos=1)
    other.publish(topic, b"other", qos=1)
    assert c.next_message().payload == b"other"


@PROTOCOLS
def test_11_paho_persistent_session_resume(paho, uid, protocol):
    # [MQTT-3.2.2-3] then [MQTT-3.2.2-2]: session present 0 on a new
    # session, 1 on resuming it; the subscription survived and messages
    # published while the client was away are delivered [MQTT-3.1.2-5].
    topic = f"paho/{uid}/s"
    props = None
    if protocol == V5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 60
    # Start from no session at all.
    fresh = paho(uid, protocol, clean=True)
    fresh.close()
    c = paho(uid, protocol, clean=False, props=props)
    assert c.session_present is False
    c.subscribe(topic, qos=1)
    c.close()
    pub = paho(uid + "-p", protocol)
    pub.publish(topic, b"while away 1", qos=1)
    pub.publish(topic, b"while away 2", qos=2)
    back = paho(uid, protocol, clean=False, props=props)
    assert back.session_present is True
    got = [back.next_message() for _ in range(2)]
    assert [(g.payload, g.qos) for g in got] == [(b"while away 1", 1), (b"while away 2", 1)]
    back.close()
    # Clean start ends the stored session.
    again = paho(uid, protocol, clean=True)
    assert again.session_present is False
