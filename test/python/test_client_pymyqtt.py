"""PyMyQtt's client API (myqtt.Conn, ConnOpts, Msg) against a real mosquitto:
status values instead of exceptions, handlers on the callback thread."""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
import weakref

import pytest

import myqtt
from conftest import HOST, wait_for


def connect(ctx, mosquitto, client_id=None, clean=True, opts=None):
    conn = myqtt.Conn(ctx, HOST, mosquitto.port, client_id, clean, 30, opts)
    assert conn.is_ok(), conn.error_msg
    return conn


def test_the_manuals_client_example_runs_with_only_python3_changes(mosquitto, capsys):
    import sys

    seen = queue.Queue()

    # --- the manual's example; the port is the fixture's, and the handler
    # --- prints msg.content (msg.payload is bytes under Python 3) ---
    ctx = myqtt.Ctx()
    if not ctx.init():
        print("ERROR: Unable to init ctx, failed to continue")
        sys.exit(-1)

    conn = myqtt.Conn(ctx, "localhost", str(mosquitto.port))
    if not conn.is_ok():
        print("ERROR: Failed to create connection with 'localhost':1602")
        sys.exit(-1)

    (status, sub_qos) = conn.sub("topic", myqtt.qos0, 10)
    assert status, "Failed to subscribe"
    print("Subscription done, sub_qos is: %d" % sub_qos)

    if not conn.pub("topic", "this is a test message", myqtt.qos0, True, 10):
        pytest.fail("Failed to publish")

    def on_msg(ctx, conn, msg, data):
        print("Msg content: " + msg.content)
        seen.put(msg.content)
        return

    conn.set_msg_received(on_msg)
    # --- end of the example ---

    assert seen.get(timeout=10) == "this is a test message"
    assert "Subscription done, sub_qos is: 0" in capsys.readouterr().out
    # Clean the retained message the example left.
    assert conn.pub("topic", b"", myqtt.qos0, True, 10)
    conn.close()
    ctx.exit()


def test_socket_is_the_connections_file_descriptor_while_connected(ctx, mosquitto):
    import os
    import socket

    conn = connect(ctx, mosquitto, "fd-client")
    fd = conn.socket
    assert isinstance(fd, int) and fd >= 0
    # The descriptor is this connection's: its peer is the server.
    with socket.socket(fileno=os.dup(fd)) as s:
        assert s.getpeername()[1] == mosquitto.port
        assert s.type == socket.SOCK_STREAM
    assert conn.close() is True
    assert conn.socket is None


def test_port_is_accepted_as_int_or_str_and_attributes_follow_pymyqtt(ctx, mosquitto):
    for port in (mosquitto.port, str(mosquitto.port)):
        conn = myqtt.Conn(ctx, HOST, port, "attr-client", True, 30)
        assert conn.is_ok()
        assert conn.host == HOST
        assert conn.port == str(mosquitto.port), "PyMyQtt's port attribute is a str"
        assert conn.client_id == "attr-client"
        assert conn.role == "client"
        assert isinstance(conn.socket, int)
        assert conn.ctx is ctx
        assert conn.username is None
        assert conn.last_err == myqtt.CONNACK_ACCEPTED
        assert conn.error_msg == ""
        assert conn.protocol == myqtt.MQTT_3_1_1
        assert conn.close() is True
        assert not conn.is_ok()


def test_a_missing_client_identifier_is_made_up_before_mqtt_5(ctx, mosquitto):
    a = connect(ctx, mosquitto)
    b = connect(ctx, mosquitto)
    assert a.client_id and b.client_id and a.client_id != b.client_id
    assert len(a.client_id) <= 23, "MQTT 3.1 allows 23 characters"


def test_a_failed_connection_does_not_raise_and_tells_why(ctx):
    from conftest import free_port

    conn = myqtt.Conn(ctx, HOST, free_port())
    assert not conn.is_ok()
    assert conn.last_err == myqtt.CONNACK_UNABLE_TO_CONNECT
    assert "cannot connect" in conn.error_msg
    assert isinstance(conn.last_exception, myqtt.ConnectError)
    # Every operation reports failure the PyMyQtt way.
    assert conn.sub("a", 0) == (False, None)
    assert conn.pub("a", "x") is False
    assert conn.ping() is False
    assert conn.get_next(0) is None
    assert conn.unsub("a") is False
    assert conn.close() is True


def test_an_empty_identifier_without_clean_session_is_rejected(ctx, mosquitto):
    # [MQTT-3.1.3-8]: CONNACK 0x02, identifier rejected.
    conn = myqtt.Conn(ctx, HOST, mosquitto.port, "", False, 30)
    assert not conn.is_ok()
    assert conn.last_err == myqtt.CONNACK_IDENTIFIER_REJECTED
    assert conn.last_exception.reason_code == myqtt.CONNACK_IDENTIFIER_REJECTED


def test_a_refused_connection_sets_last_err_to_the_connack_code(ctx, fake_broker):
    b = fake_broker("refuse", code=myqtt.CONNACK_NOT_AUTHORIZED)
    conn = myqtt.Conn(ctx, HOST, b.port, "x", True, 30)
    assert not conn.is_ok()
    assert conn.last_err == myqtt.CONNACK_NOT_AUTHORIZED
    assert "refused" in conn.error_msg


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_and_subscribe_between_two_connections(ctx, mosquitto, topic, qos):
    sub = connect(ctx, mosquitto)
    pub = connect(ctx, mosquitto)
    assert sub.sub(topic, qos, 10) == (True, qos)
    assert pub.pub(topic, "héllo", qos, False, 10)
    msg = sub.get_next(10000)
    assert msg is not None
    assert msg.topic == topic
    assert msg.payload == "héllo".encode()
    assert msg.content == "héllo"
    assert msg.size == len("héllo".encode()) == msg.payload_size == msg.content_size
    assert msg.qos == qos
    assert msg.retain is False and msg.dup is False
    assert msg.type == "PUBLISH"
    assert (msg.id != 0) == (qos > 0), "a packet id only at QoS 1 and 2"
    assert not msg.properties, "no properties before MQTT 5"


def test_payload_is_bytes_and_content_decodes_text(ctx, mosquitto, topic):
    conn = connect(ctx, mosquitto)
    assert conn.sub(topic, 1)[0]
    raw = bytes(range(256))
    assert conn.pub(topic, raw, 1)
    assert conn.pub(topic, bytearray(b"ba"), 1)
    assert conn.pub(topic, memoryview(b"mv"), 1)
    m = conn.get_next(10000)
    assert m.payload == raw and m.size == 256
    assert "\ufffd" in m.content, "invalid UTF-8 is replaced"
    assert conn.get_next(10000).payload == b"ba"
    assert conn.get_next(10000).payload == b"mv"
    with pytest.raises(TypeError):
        conn.pub(topic, 3)


def test_a_retained_message_reaches_a_later_subscriber(ctx, mosquitto, topic):
    pub = connect(ctx, mosquitto)
    assert pub.pub(topic, "kept", 1, True)
    sub = connect(ctx, mosquitto)
    assert sub.sub(topic, 1)[0]
    m = sub.get_next(10000)
    assert m.content == "kept"
    assert m.retain is True, "[MQTT-3.3.1-8] retained because of a new subscription"
    assert pub.pub(topic, "", 0, True)


def test_get_next_times_out_with_none_in_milliseconds(ctx, mosquitto):
    conn = connect(ctx, mosquitto)
    assert conn.get_next(0) is None
    assert conn.get_next(30) is None


def test_unsubscribed_topics_no_longer_deliver(ctx, mosquitto, topic):
    conn = connect(ctx, mosquitto)
    assert conn.sub(topic + "/a", 1)[0]
    assert conn.sub(topic + "/b", 1)[0]
    assert conn.unsub(topic + "/a", 10) is True
    assert conn.pub(topic + "/a", "gone", 1)
    assert conn.pub(topic + "/b", "marker", 1)
    # Messages come in order: the marker is the first one.
    assert conn.get_next(10000).content == "marker"


def test_ping_is_answered(ctx, mosquitto):
    conn = connect(ctx, mosquitto)
    assert conn.ping(10) is True
    assert conn.ping(wait_pingresp=5) is True


def test_on_msg_gets_ctx_the_same_conn_the_msg_and_data(ctx, mosquitto, topic):
    conn = connect(ctx, mosquitto)
    got = queue.Queue()
    conn.set_on_msg(
        lambda c, cn, m, d: got.put((c, cn, m.content, d, threading.current_thread())),
        "user data",
    )
    assert conn.sub(topic, 1)[0]
    assert conn.pub(topic, "hi", 1)
    c, cn, content, data, thread = got.get(timeout=10)
    assert c is ctx and cn is conn
    assert (content, data) == ("hi", "user data")
    assert thread is not threading.main_thread(), "handlers run on the callback thread"


def test_removing_on_msg_sends_messages_back_to_get_next(ctx, mosquitto, topic):
    conn = connect(ctx, mosquitto)
    got = queue.Queue()
    conn.set_on_msg(lambda c, cn, m, d: got.put(m.content))
    assert conn.sub(topic, 1)[0]
    assert conn.pub(topic, "one", 1)
    assert got.get(timeout=10) == "one"
    conn.set_on_msg(None)
    assert conn.pub(topic, "two", 1)
    assert conn.get_next(10000).content == "two"


def test_a_handler_can_publish_and_wait_for_the_ack_without_deadlock(ctx, mosquitto, topic):
    server = connect(ctx, mosquitto)
    client = connect(ctx, mosquitto)

    def on_request(ctx, conn, msg, data):
        # QoS 2 and waiting for PUBCOMP, from the callback thread.
        assert conn.pub(topic + "/reply", "re: " + msg.content, 2, False, 10)

    server.set_on_msg(on_request)
    assert server.sub(topic + "/req", 2)[0]
    assert client.sub(topic + "/reply", 2)[0]
    for i in range(5):
        assert client.pub(topic + "/req", f"q{i}", 2)
    assert [client.get_next(10000).content for _ in range(5)] == [f"re: q{i}" for i in range(5)]


def test_a_handler_exception_is_logged_and_the_next_message_handled(
    ctx, mosquitto, topic, caplog
):
    conn = connect(ctx, mosquitto)
    got = queue.Queue()

    def on_msg(ctx, conn, msg, data):
        if msg.content == "boom":
            raise ValueError("handler failure")
        got.put(msg.content)

    conn.set_on_msg(on_msg)
    assert conn.sub(topic, 1)[0]
    with caplog.at_level(logging.ERROR, logger="myqtt"):
        assert conn.pub(topic, "boom", 1)
        assert conn.pub(topic, "fine", 1)
        assert got.get(timeout=10) == "fine"
    [rec] = [r for r in caplog.records if r.name == "myqtt" and r.exc_info]
    assert "on_msg handler raised" in rec.getMessage()
    assert rec.exc_info[0] is ValueError
    assert conn.is_ok()


def will_opts():
    opts = myqtt.ConnOpts()
    opts.set_will(myqtt.qos2, "I lost connection", "Hey I lost connection, this is my status:....", False)
    return opts


def test_the_will_is_published_after_shutdown(ctx, mosquitto):
    # Regression test 08: [MQTT-3.1.2-8].
    conn = connect(ctx, mosquitto, opts=will_opts())
    conn2 = connect(ctx, mosquitto)
    assert conn2.sub("I lost connection", myqtt.qos0)[0]
    q = myqtt.AsyncQueue()
    conn2.set_on_msg(lambda c, cn, m, d: d.push(m), q)
    conn.shutdown()
    msg = q.timedpop(10_000_000)
    assert msg is not None
    assert msg.topic == "I lost connection"
    assert msg.content == "Hey I lost connection, this is my status:...."


def test_the_will_is_not_published_after_close(ctx, mosquitto, topic):
    # Regression test 09: DISCONNECT discards the will [MQTT-3.1.2-10].
    opts = myqtt.ConnOpts()
    opts.set_will(myqtt.qos1, topic, "will", False)
    conn = connect(ctx, mosquitto, opts=opts)
    conn2 = connect(ctx, mosquitto)
    assert conn2.sub(topic, 1)[0]
    assert conn.close()
    # A marker published after the close: had a will been published, it
    # would come first.
    conn3 = connect(ctx, mosquitto)
    assert conn3.pub(topic, "marker", 1)
    assert conn2.get_next(10000).content == "marker"


def test_on_close_is_told_when_the_connection_ends(ctx, mosquitto):
    conn = connect(ctx, mosquitto)
    closed = queue.Queue()
    h = conn.set_on_close(lambda c, d: closed.put((c, d)), "bye")
    assert isinstance(h, myqtt.Handle)
    h2 = conn.set_on_close(lambda c, d: closed.put("second"))
    assert conn.remove_on_close(h2) is True
    assert conn.remove_on_close(h2) is False
    conn.shutdown()
    c, d = closed.get(timeout=10)
    assert c is conn and d == "bye"
    assert closed.empty()


def test_set_reconnect_reconnects_and_resubscribes_after_the_socket_is_cut(
    ctx, mosquitto, proxy, topic
):
    opts = myqtt.ConnOpts()
    opts.set_reconnect(True, initial_delay=0.05)
    assert opts.reconnect
    conn = myqtt.Conn(ctx, HOST, proxy.port, None, True, 30, opts)
    assert conn.is_ok()
    reconnected = threading.Event()
    conn.set_on_reconnect(lambda c, d: d.set(), reconnected)
    assert conn.sub(topic, 1)[0]
    proxy.drop()
    assert reconnected.wait(10)
    assert conn.reconnect_count == 1
    wait_for(conn.is_ok, what="reconnected")
    # Clean session: the subscription was made again on the new session.
    other = connect(ctx, mosquitto)
    assert other.pub(topic, "after", 1)
    assert conn.get_next(10000).content == "after"


def test_mqtt_5_lets_the_server_assign_the_identifier(ctx, mosquitto):
    opts = myqtt.ConnOpts()
    opts.set_protocol(5)
    conn = myqtt.Conn(ctx, HOST, mosquitto.port, None, True, 30, opts)
    assert conn.is_ok(), conn.error_msg
    assert conn.protocol == 5
    assert conn.client_id, "the CONNACK's Assigned Client Identifier"


def test_a_conn_whose_handler_refers_to_it_is_collected(ctx, mosquitto):
    conn = connect(ctx, mosquitto)
    conn.set_on_msg(lambda c, cn, m, d: conn.ping())
    ref = weakref.ref(conn)
    del conn
    gc.collect()
    assert ref() is None


def test_conn_opts_validate_their_arguments():
    opts = myqtt.ConnOpts()
    with pytest.raises(ValueError):
        opts.set_will(3, "t", "m", False)
    with pytest.raises(ValueError):
        opts.set_will(0, "a/+", "m", False)
    with pytest.raises(ValueError):
        opts.set_protocol(6)
    with pytest.raises(ValueError):
        opts.set_properties({"no_such_property": 1})
    opts.set_auth("user", b"secret")
    assert "user" in repr(opts)


def test_an_invalid_topic_is_a_failed_status_not_an_exception(ctx, mosquitto):
    conn = connect(ctx, mosquitto)
    assert conn.pub("a/+", "x") is False
    assert "invalid topic" in conn.error_msg
    assert conn.sub("a/#/b", 0) == (False, None)


def test_a_slow_handler_holding_the_gil_does_not_cost_the_keep_alive(ctx, mosquitto, topic):
    # mosquitto closes a connection silent for 1.5 keep-alive periods
    # [MQTT-3.1.2-24]; the engine pings without the GIL.
    conn = myqtt.Conn(ctx, HOST, mosquitto.port, None, True, 1)
    assert conn.is_ok()
    done = threading.Event()

    def busy(ctx, conn, msg, data):
        end = time.monotonic() + 2.5
        while time.monotonic() < end:  # pure Python: holds the GIL
            pass
        done.set()

    conn.set_on_msg(busy)
    assert conn.sub(topic, 0)[0]
    assert conn.pub(topic, "slow", 0)
    assert done.wait(10)
    assert conn.is_ok()
    assert conn.ping(5)
