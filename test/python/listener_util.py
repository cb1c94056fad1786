"""Helpers of the listener suites: a context with a listener on a free port,
and paho-mqtt clients that record what happens to them."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterator, List, Optional

import paho.mqtt.client as mqtt
import pytest

import myqtt

HOST = "127.0.0.1"


def wait_for(cond: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Polls `cond` until it is true; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


class Broker:
    """A context with one listener on 127.0.0.1, port picked by the system."""

    def __init__(self) -> None:
        self.ctx = myqtt.Ctx()
        assert self.ctx.init()
        self.listener: Optional[myqtt.Listener] = None

    def start(self) -> "Broker":
        self.listener = myqtt.create_listener(self.ctx, HOST, 0)
        assert self.listener.is_ok(), self.listener.error_msg
        return self

    @property
    def port(self) -> int:
        assert self.listener is not None
        return self.listener.port

    def close(self) -> None:
        self.ctx.exit()


def broker_fixture() -> Iterator[Broker]:
    b = Broker()
    try:
        yield b
    finally:
        b.close()


class Client:
    """A paho-mqtt client recording its CONNACK, messages and disconnects."""

    def __init__(
        self,
        port: int,
        client_id: str = "",
        username: Optional[str] = None,
        password: Optional[str] = None,
        keepalive: int = 60,
        protocol: int = mqtt.MQTTv311,
        will: Optional[tuple] = None,
        wait: bool = True,
    ) -> None:
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            reconnect_on_failure=False,
        )
        if username is not None:
            self.c.username_pw_set(username, password)
        if will is not None:
            self.c.will_set(*will)
        self.rc: Any = None
        self.connack = threading.Event()
        self.disconnected = threading.Event()
        self.disconnect_rc: Any = None
        self.messages: List[mqtt.MQTTMessage] = []
        self.subacks: List[Any] = []
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = lambda c, u, m: self.messages.append(m)
        self.c.on_subscribe = lambda c, u, mid, codes, p: self.subacks.append(codes)
        self.c.connect(HOST, port, keepalive=keepalive)
        self.c.loop_start()
        if wait:
            wait_for(self.connack.is_set, what="CONNACK")

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        self.rc = rc
        self.connack.set()

    def _on_disconnect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        self.disconnect_rc = rc
        self.disconnected.set()

    @property
    def accepted(self) -> bool:
        return self.rc is not None and not self.rc.is_failure

    def subscribe(self, topic: str, qos: int = 0) -> Any:
        n = len(self.subacks)
        self.c.subscribe(topic, qos)
        wait_for(lambda: len(self.subacks) > n, what="SUBACK")
        return self.subacks[-1]

    def publish(self, topic: str, payload: Any, qos: int = 0, retain: bool = False) -> Any:
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published()
        return info

    def topics(self) -> List[str]:
        return [m.topic for m in self.messages]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
