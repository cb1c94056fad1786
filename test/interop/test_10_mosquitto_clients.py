"""mosquitto_pub / mosquitto_sub (Debian mosquitto-clients) against the
myqtt listener at MQTT 3.1 (-V 31), 3.1.1 (-V 311) and 5 (-V 5)."""

import pytest

from conftest import run_pub

VERSIONS = ["31", "311", "5"]
FMT = "MSG|%q|%r|%t|%p"


def sub_args(listener, version, topic, qos=0, *extra):
    return ["-h", listener.host, "-p", listener.port, "-V", version, "-t", topic, "-q", qos,
            "-F", FMT, "-d", *extra]


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("version", VERSIONS)
def test_10_mosquitto_pub_sub(myqtt_listener, tools, uid, version, qos):
    # Publish and subscribe at each protocol level and QoS; the message
    # arrives at the QoS of the flow, once, not retained (§4.3, [MQTT-3.3.1-9]).
    # The publisher also speaks another level, which the broker bridges.
    topic = f"interop/{uid}"
    sub = tools("mosquitto_sub", *sub_args(myqtt_listener, version, topic, qos, "-C", 2, "-i", uid))
    sub.wait_subscribed()
    other = {"31": "5", "311": "31", "5": "311"}[version]
    run_pub(myqtt_listener, "-V", version, "-q", qos, "-t", topic, "-m", f"same {version}")
    run_pub(myqtt_listener, "-V", other, "-q", qos, "-t", topic, "-m", f"from {other}")
    assert sub.messages(2) == [f"{qos}|0|{topic}|same {version}", f"{qos}|0|{topic}|from {other}"]
    assert sub.finish() == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_10_mosquitto_qos_downgraded_to_the_subscription(myqtt_listener, tools, uid, version):
    # [MQTT-3.8.4-6]: a QoS 2 message reaches a QoS 1 subscriber at QoS 1.
    topic = f"interop/{uid}"
    sub = tools("mosquitto_sub", *sub_args(myqtt_listener, version, topic, 1, "-C", 1))
    sub.wait_subscribed()
    run_pub(myqtt_listener, "-V", version, "-q", 2, "-t", topic, "-m", "down")
    assert sub.messages(1) == [f"1|0|{topic}|down"]


@pytest.mark.parametrize("version", VERSIONS)
def test_10_mosquitto_retained(myqtt_listener, tools, uid, version):
    # -r: the message is kept and given to a later subscriber with the
    # retain flag [MQTT-3.3.1-8]; a new one replaces it [MQTT-3.3.1-7]; an
    # empty retained message (-n) clears it [MQTT-3.3.1-10].
    topic = f"retained/{uid}"
    run_pub(myqtt_listener, "-V", version, "-q", 1, "-r", "-t", topic, "-m", "old")
    run_pub(myqtt_listener, "-V", version, "-q", 1, "-r", "-t", topic, "-m", "kept")
    sub = tools("mosquitto_sub", *sub_args(myqtt_listener, version, topic, 1, "-C", 1))
    assert sub.messages(1) == [f"1|1|{topic}|kept"]
    assert sub.finish() == 0

    run_pub(myqtt_listener, "-V", version, "-r", "-n", "-t", topic)
    # After clearing, a new subscriber's first message is a live one.
    sub = tools("mosquitto_sub", *sub_args(myqtt_listener, version, topic, 1, "-C", 1))
    sub.wait_subscribed()
    run_pub(myqtt_listener, "-V", version, "-q", 1, "-t", topic, "-m", "live")
    assert sub.messages(1) == [f"1|0|{topic}|live"]


@pytest.mark.parametrize("version", VERSIONS)
def test_10_mosquitto_sub_will_on_sigkill(myqtt_listener, tools, uid, version):
    # [MQTT-3.1.2-8]: mosquitto_sub with a will, killed with SIGKILL (no
    # DISCONNECT): the will is published, here retained [MQTT-3.1.2-17].
    will_topic = f"will/{uid}"
    watcher = tools("mosquitto_sub", *sub_args(myqtt_listener, version, will_topic, 1, "-C", 1))
    watcher.wait_subscribed()
    doomed = tools("mosquitto_sub", *sub_args(myqtt_listener, version, f"nothing/{uid}", 0,
                                              "--will-topic", will_topic, "--will-payload", "died",
                                              "--will-qos", 1, "--will-retain", "-i", uid))
    doomed.wait_subscribed()
    doomed.sigkill()
    assert watcher.messages(1) == [f"1|0|{will_topic}|died"]
    # Retained: a later subscriber gets it with the retain flag.
    late = tools("mosquitto_sub", *sub_args(myqtt_listener, version, will_topic, 1, "-C", 1))
    assert late.messages(1) == [f"1|1|{will_topic}|died"]
    run_pub(myqtt_listener, "-V", version, "-r", "-n", "-t", will_topic)


@pytest.mark.parametrize("version", VERSIONS)
def test_10_mosquitto_pub_will_on_sigkill(myqtt_listener, tools, uid, version):
    # mosquitto_pub -l keeps its connection open reading stdin; killed with
    # SIGKILL after one line, its will goes out; lines it sent arrive first.
    will_topic = f"will/{uid}"
    watcher = tools("mosquitto_sub", *sub_args(myqtt_listener, version, f"{will_topic}/#", 2, "-C", 2))
    watcher.wait_subscribed()
    pub = tools("mosquitto_pub", "-h", myqtt_listener.host, "-p", myqtt_listener.port, "-V", version,
                "-t", f"{will_topic}/line", "-q", 1, "-l", "-d", "--will-topic", f"{will_topic}/w",
                "--will-payload", "pub died", "--will-qos", 2, stdin=True)
    pub.wait_connected()
    pub.proc.stdin.write(b"a line\n")
    pub.proc.stdin.flush()
    pub.wait_line(lambda s: "received PUBACK" in s, what="PUBACK")
    pub.sigkill()
    assert watcher.messages(2) == [f"1|0|{will_topic}/line|a line", f"2|0|{will_topic}/w|pub died"]


@pytest.mark.parametrize("version", ["311", "5"])
def test_10_mosquitto_will_not_sent_on_clean_exit(myqtt_listener, tools, uid, version):
    # [MQTT-3.1.2-10]: a client that ends with DISCONNECT (mosquitto_sub -C 1
    # exits normally) does not trigger its will.
    will_topic = f"will/{uid}"
    watcher = tools("mosquitto_sub", *sub_args(myqtt_listener, version, f"{will_topic}/#", 1, "-C", 2))
    watcher.wait_subscribed()
    polite = tools("mosquitto_sub", *sub_args(myqtt_listener, version, f"{will_topic}/go", 0, "-C", 1,
                                              "--will-topic", f"{will_topic}/w", "--will-payload", "no"))
    polite.wait_subscribed()
    run_pub(myqtt_listener, "-V", version, "-t", f"{will_topic}/go", "-m", "bye")
    assert polite.finish() == 0
    # The watcher sees "bye", then a marker published after the polite
    # client's exit, and never the will.
    run_pub(myqtt_listener, "-V", version, "-q", 1, "-t", f"{will_topic}/marker", "-m", "m")
    assert watcher.messages(2) == [f"0|0|{will_topic}/go|bye", f"1|0|{will_topic}/marker|m"]


def test_10_mosquitto_v5_properties(myqtt_listener, tools, uid):
    # MQTT 5 properties set with mosquitto_pub -D are forwarded unchanged to
    # mosquitto_sub ([MQTT-3.3.2-17], [MQTT-3.3.2-20], [MQTT-3.3.2-15],
    # [MQTT-3.3.2-16]), with the subscription identifier it asked for
    # ([MQTT-3.3.4-3]) and the expiry counted down ([MQTT-3.3.2-6]).
    topic = f"props/{uid}"
    sub = tools("mosquitto_sub", "-h", myqtt_listener.host, "-p", myqtt_listener.port, "-V", "5",
                "-t", topic, "-q", 1, "-d", "-C", 1, "-D", "subscribe", "subscription-identifier", 42,
                "-F", "MSG|%P|%C|%R|%D|%S|%E|%p")
    sub.wait_subscribed()
    run_pub(myqtt_listener, "-V", "5", "-q", 1, "-t", topic, "-m", "body",
            "-D", "publish", "user-property", "k1", "v1",
            "-D", "publish", "user-property", "k2", "v2",
            "-D", "publish", "content-type", "text/x",
            "-D", "publish", "response-topic", f"{topic}/reply",
            "-D", "publish", "correlation-data", "corr",
            "-D", "publish", "message-expiry-interval", 300)
    (line,) = sub.messages(1)
    user, ctype, resp, corr, sid, expiry, payload = line.split("|")
    assert user.split() == ["k1:v1", "k2:v2"] or user == "k1:v1 k2:v2", user
    assert (ctype, resp, corr, sid, payload) == ("text/x", f"{topic}/reply", "corr", "42", "body")
    assert 298 <= int(expiry) <= 300
