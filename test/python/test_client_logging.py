"""Rust tracing output reaches Python logging under the logger "myqtt",
formatted off the GIL and filtered by the logger's effective level."""

from __future__ import annotations

import logging
import queue
import time
from typing import Iterator, List

import pytest

import myqtt
from conftest import HOST


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=1)
        self.records: "queue.Queue[logging.LogRecord]" = queue.Queue()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.put(record)

    def wait_for(self, pred, timeout: float = 10.0) -> logging.LogRecord:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail("no matching log record")
            try:
                r = self.records.get(timeout=left)
            except queue.Empty:
                continue
            if pred(r):
                return r
            self.seen.append(r)

    seen: List[logging.LogRecord]


@pytest.fixture
def collect() -> Iterator[Collect]:
    logger = logging.getLogger("myqtt")
    h = Collect()
    h.seen = []
    old = logger.level
    logger.addHandler(h)
    logger.setLevel(logging.DEBUG)
    myqtt.refresh_log_level()
    yield h
    logger.removeHandler(h)
    logger.setLevel(old)
    myqtt.refresh_log_level()


def connected(client_id: str):
    return lambda r: f"client_id={client_id} " in r.getMessage() and r.getMessage().endswith(
        "connected session_present=false"
    )


def test_a_debug_record_of_the_engine_reaches_a_child_of_the_myqtt_logger(collect, mosquitto):
    assert myqtt._myqtt.LOG_FORWARDING
    with myqtt.connect(HOST, mosquitto.port, client_id="log-a"):
        pass
    r = collect.wait_for(connected("log-a"))
    assert r.name == "myqtt.client.driver"
    assert r.levelno == logging.DEBUG
    # The span of the connection names it.
    assert r.getMessage().startswith(f"mqtt_client{{client_id=log-a peer={HOST}:{mosquitto.port}}}: ")
    assert r.pathname.endswith("driver.rs") and r.lineno > 0


def test_records_below_the_logger_level_are_not_produced(collect, mosquitto):
    logging.getLogger("myqtt").setLevel(logging.WARNING)
    myqtt.refresh_log_level()
    with myqtt.connect(HOST, mosquitto.port, client_id="log-quiet"):
        pass
    logging.getLogger("myqtt").setLevel(logging.DEBUG)
    myqtt.refresh_log_level()
    with myqtt.connect(HOST, mosquitto.port, client_id="log-loud"):
        pass
    collect.wait_for(connected("log-loud"))
    # Records come in order: anything from the first client came before.
    assert not [r for r in collect.seen if "log-quiet" in r.getMessage()]


def test_levels_map_to_python_levels():
    assert logging.getLevelName(myqtt.TRACE) == "TRACE"
    assert myqtt.TRACE == 5


def test_a_warning_of_the_engine_is_a_python_warning(collect, fake_broker):
    # A SUBACK return code other than 0, 1, 2 and 0x80 breaks the protocol
    # (MQTT 3.1.1 §3.9.3): the engine warns (a peer broke the protocol) and
    # closes the connection.
    b = fake_broker("accept", suback_code=0x87)
    conn = myqtt.connect(HOST, b.port, client_id="log-warn")
    with pytest.raises(myqtt.ProtocolError):
        conn.subscribe("a", qos=1, timeout=5)
    r = collect.wait_for(lambda r: r.levelno == logging.WARNING and "log-warn" in r.getMessage())
    assert r.levelname == "WARNING"
    assert "invalid packet" in r.getMessage()


def test_the_ctx_log_handler_receives_records_pymyqtt_style(ctx, mosquitto):
    # The manual's regression test 11: ctx.set_log_handler(handler, data).
    got: "queue.Queue[tuple]" = queue.Queue()

    def handler(c, file, line, level, msg, data):
        got.put((c, file, line, level, msg, data))

    ctx.set_log_handler(handler, "data")
    try:
        conn = myqtt.Conn(ctx, HOST, mosquitto.port, "log-handler", True, 30)
        assert conn.is_ok()
        conn.close()
        deadline = time.monotonic() + 10
        while True:
            c, file, line, level, msg, data = got.get(timeout=max(0.01, deadline - time.monotonic()))
            if "log-handler" in msg and "connected" in msg:
                break
        assert c is ctx and data == "data"
        assert level == myqtt.level_debug
        assert file.endswith(".rs") and line > 0
    finally:
        ctx.set_log_handler(None)
