"""The Pythonic client (myqtt.connect): exceptions with reason codes,
publish handles, subscribe results, message iteration, MQTT 5 properties,
and paho-mqtt as a peer."""

from __future__ import annotations

import queue
import threading

import pytest

import myqtt
from conftest import HOST, free_port, wait_for


@pytest.fixture
def client(mosquitto, ctx):
    with myqtt.connect(HOST, mosquitto.port, ctx=ctx) as c:
        yield c


def test_connect_works_as_a_context_manager_and_closes(mosquitto, topic):
    with myqtt.connect(HOST, mosquitto.port) as conn:
        assert conn.is_connected()
        assert conn.protocol == 4
        assert conn.subscribe(topic, qos=1).granted_qos == [1]
    assert not conn.is_connected()
    assert conn.native.closed


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_returns_an_acknowledged_handle(client, topic, qos):
    client.subscribe(topic, qos=qos)
    h = client.publish(topic, b"payload", qos=qos)
    assert h.done()
    assert h.qos == qos
    assert h.reason_code == 0
    if qos:
        assert isinstance(h.packet_id, int) and 1 <= h.packet_id <= 65535
    else:
        assert h.packet_id is None, "QoS 0 has no packet id"
    assert h.wait(1) is h, "waiting again returns at once"
    msg = client.get_message(timeout=10)
    assert (msg.payload, msg.qos) == (b"payload", qos)


def test_publish_without_waiting_returns_a_handle_that_resolves(client, topic):
    client.subscribe(topic, qos=2)
    handles = [client.publish(topic, str(i), qos=2, wait=False) for i in range(20)]
    for h in handles:
        h.wait(10)
        assert h.reason_code == 0
    assert len({h.packet_id for h in handles}) == 20
    got = [client.get_message(10).content for _ in range(20)]
    assert got == [str(i) for i in range(20)], "[MQTT-4.6.0-6] order is kept"


def test_messages_iterates_until_the_idle_timeout(client, topic):
    client.subscribe([(topic + "/a", 1), topic + "/b"], qos=0)
    client.publish(topic + "/a", "1", qos=1)
    client.publish(topic + "/b", "2", qos=1)
    got = [(m.topic, m.content, m.qos) for m in client.messages(timeout=0.3)]
    assert got == [(topic + "/a", "1", 1), (topic + "/b", "2", 0)]


def test_messages_ends_after_close(client, topic):
    client.subscribe(topic)
    t = threading.Timer(0.1, client.close)
    t.start()
    assert list(client.messages()) == []
    t.join()


def test_a_refused_connection_raises_with_the_reason_code(fake_broker):
    b = fake_broker("refuse", code=5)
    with pytest.raises(myqtt.ConnectionRefusedError) as e:
        myqtt.connect(HOST, b.port)
    assert e.value.reason_code == 5 == myqtt.CONNACK_NOT_AUTHORIZED
    assert isinstance(e.value, myqtt.MyqttError)


def test_a_refused_mqtt_5_connection_carries_the_mqtt_5_reason_code(fake_broker):
    b = fake_broker("refuse", code=0x87)
    with pytest.raises(myqtt.ConnectionRefusedError) as e:
        myqtt.connect(HOST, b.port, protocol=5)
    assert e.value.reason_code == 0x87, "Not authorized, MQTT 5.0 §3.2.2.2"


def test_mosquitto_rejects_an_empty_identifier_without_clean_start(mosquitto):
    # [MQTT-3.1.3-8]
    with pytest.raises(myqtt.ConnectionRefusedError) as e:
        myqtt.connect(HOST, mosquitto.port, client_id="", clean_start=False)
    assert e.value.reason_code == myqtt.CONNACK_IDENTIFIER_REJECTED


def test_no_listener_raises_connect_error():
    with pytest.raises(myqtt.ConnectError):
        myqtt.connect(HOST, free_port())


def test_no_connack_in_time_raises_timeout_error(fake_broker):
    b = fake_broker("silent")
    with pytest.raises(myqtt.TimeoutError):
        myqtt.connect(HOST, b.port, timeout=0.2)


def test_an_unacknowledged_publish_times_out_then_fails_when_the_link_is_lost(fake_broker):
    b = fake_broker("accept")
    conn = myqtt.connect(HOST, b.port)
    with pytest.raises(myqtt.TimeoutError):
        conn.publish("t", b"x", qos=1, timeout=0.1)
    h = conn.publish("t", b"y", qos=1, wait=False)
    with pytest.raises(myqtt.TimeoutError):
        h.wait(0.05)
    assert not h.done()
    b.drop_clients()
    # The handle always resolves: the message is not resumed (clean start).
    with pytest.raises(myqtt.ConnectionLostError):
        h.wait(10)
    with pytest.raises(myqtt.ConnectionLostError):
        conn.publish("t", b"z", qos=1)
    with pytest.raises(myqtt.ConnectionLostError):
        conn.get_message(0)


def test_a_refused_subscription_raises_refused_error(fake_broker):
    b = fake_broker("accept", suback_code=0x80)
    with myqtt.connect(HOST, b.port) as conn:
        with pytest.raises(myqtt.RefusedError) as e:
            conn.subscribe("a/b", qos=1)
    assert e.value.reason_code == 0x80
    assert e.value.reason_codes == [0x80]


def test_an_mqtt_5_puback_failure_raises_refused_error(fake_broker):
    b = fake_broker("accept", puback_code=0x87)
    with myqtt.connect(HOST, b.port, protocol=5) as conn:
        with pytest.raises(myqtt.RefusedError) as e:
            conn.publish("a/b", b"x", qos=1)
    assert e.value.reason_code == 0x87


def test_invalid_arguments_raise_value_error(client):
    with pytest.raises(ValueError):
        client.publish("a/#", b"x")
    with pytest.raises(ValueError):
        client.publish("a", b"x", qos=3)
    with pytest.raises(ValueError):
        client.subscribe([])
    with pytest.raises(ValueError):
        client.publish("a", b"x", properties={"colour": "red"})


def test_ping_measures_a_round_trip(client):
    assert 0 <= client.ping() < 10


def test_the_will_is_published_after_shutdown_only(mosquitto, topic):
    with myqtt.connect(HOST, mosquitto.port) as watcher:
        watcher.subscribe(topic + "/#", qos=1)
        a = myqtt.connect(HOST, mosquitto.port, will=myqtt.Will(topic + "/a", b"gone", 1))
        b = myqtt.connect(HOST, mosquitto.port, will=(topic + "/b", "gone", 1, False))
        b.close()
        a.shutdown()
        msg = watcher.get_message(10)
        assert (msg.topic, msg.payload) == (topic + "/a", b"gone")


def test_mqtt_5_properties_round_trip(mosquitto, topic):
    props = myqtt.Properties(
        user_properties=[("k", "v1"), ("k", "v2"), ("x", "y")],
        response_topic=topic + "/reply",
        correlation_data=b"\x00\x01\x02",
        content_type="text/plain",
        message_expiry_interval=60,
        payload_format_indicator=True,
    )
    with myqtt.connect(HOST, mosquitto.port, protocol=5) as conn:
        assert conn.subscribe(topic, qos=1, properties={"subscription_identifier": 7}).reason_codes == [1]
        h = conn.publish(topic, "body", qos=1, properties=props)
        assert h.reason_code == 0
        msg = conn.get_message(10)
    p = msg.properties
    assert p.user_properties == [("k", "v1"), ("k", "v2"), ("x", "y")]
    assert p.response_topic == topic + "/reply"
    assert p.correlation_data == b"\x00\x01\x02"
    assert p.content_type == "text/plain"
    assert p.payload_format_indicator is True
    assert 0 < p.message_expiry_interval <= 60
    assert p.subscription_identifiers == [7]
    assert p.to_dict()["user_properties"] == p.user_properties
    assert "response_topic" in repr(p)


def test_request_response_with_response_topic_and_correlation_data(mosquitto, topic):
    with myqtt.connect(HOST, mosquitto.port, protocol=5) as server, myqtt.connect(
        HOST, mosquitto.port, protocol=5
    ) as requester:

        def serve(ctx, conn, msg, data):
            p = msg.properties
            # The handler's conn is the native myqtt.Conn.
            conn.publish(
                p.response_topic,
                msg.payload.upper(),
                qos=2,
                properties={"correlation_data": p.correlation_data},
            ).wait(10)

        server.native.set_on_msg(serve)
        server.subscribe(topic + "/req", qos=2)
        requester.subscribe(topic + "/resp", qos=2)
        for i in range(3):
            requester.publish(
                topic + "/req",
                f"ask{i}",
                qos=2,
                properties={"response_topic": topic + "/resp", "correlation_data": bytes([i])},
            )
        replies = {}
        for _ in range(3):
            m = requester.get_message(10)
            replies[m.properties.correlation_data] = m.payload
    assert replies == {bytes([i]): f"ASK{i}".encode() for i in range(3)}


def test_a_lost_connection_is_resumed_with_reconnect(mosquitto, proxy, topic):
    with myqtt.connect(
        HOST, proxy.port, reconnect={"initial_delay": 0.05}, client_id="pythonic-reconnect"
    ) as conn:
        conn.subscribe(topic, qos=1)
        proxy.drop()
        wait_for(lambda: conn.native.reconnect_count == 1, what="a reconnection")
        with myqtt.connect(HOST, mosquitto.port) as other:
            other.publish(topic, "after", qos=1)
        assert conn.get_message(10).content == "after"


def test_paho_publishes_and_myqtt_receives_with_properties(mosquitto, topic):
    import paho.mqtt.client as paho
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties as PahoProperties

    with myqtt.connect(HOST, mosquitto.port, protocol=5) as conn:
        conn.subscribe(topic, qos=1)
        p = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        p.connect(HOST, mosquitto.port)
        p.loop_start()
        try:
            props = PahoProperties(PacketTypes.PUBLISH)
            props.UserProperty = ("from", "paho")
            props.ResponseTopic = "paho/replies"
            p.publish(topic, b"from paho", qos=1, properties=props).wait_for_publish(10)
            msg = conn.get_message(10)
        finally:
            p.loop_stop()
            p.disconnect()
    assert msg.payload == b"from paho"
    assert msg.properties.user_properties == [("from", "paho")]
    assert msg.properties.response_topic == "paho/replies"


def test_myqtt_publishes_and_paho_receives(mosquitto, topic):
    import paho.mqtt.client as paho

    got: "queue.Queue[tuple]" = queue.Queue()
    subscribed = threading.Event()
    p = paho.Client(paho.CallbackAPIVersion.VERSION2)
    p.on_message = lambda c, u, m: got.put((m.topic, m.payload, m.qos, m.retain))
    p.on_subscribe = lambda *a: subscribed.set()
    p.connect(HOST, mosquitto.port)
    p.loop_start()
    try:
        p.subscribe(topic, qos=2)
        assert subscribed.wait(10)
        with myqtt.connect(HOST, mosquitto.port) as conn:
            conn.publish(topic, b"to paho", qos=2)
        assert got.get(timeout=10) == (topic, b"to paho", 2, False)
    finally:
        p.loop_stop()
        p.disconnect()
