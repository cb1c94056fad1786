"""Fixtures for the Python suites: a real mosquitto on a free loopback port,
contexts, unique topics, and small hand-written peers (a broker that answers
CONNECT and then stays silent, one that refuses, a TCP proxy whose
connections can be cut) for the cases a real broker cannot produce on
demand."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid
from typing import Callable, Iterator, List, Optional

import pytest

import myqtt

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Polls `cond` until it is true; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


class Mosquitto:
    """A mosquitto process listening on 127.0.0.1:`port`."""

    def __init__(self, workdir: str) -> None:
        self.host = HOST
        self.port = free_port()
        self.conf = os.path.join(workdir, "mosquitto.conf")
        self.log_path = os.path.join(workdir, "mosquitto.log")
        with open(self.conf, "w") as f:
            f.write(f"listener {self.port} {HOST}\nallow_anonymous true\npersistence false\n")
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", self.conf, "-v"], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {open(self.log_path).read()}")
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not start listening")
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    m = Mosquitto(str(tmp_path_factory.mktemp("mosquitto")))
    m.start()
    yield m
    m.stop()


@pytest.fixture
def ctx() -> Iterator[myqtt.Ctx]:
    c = myqtt.Ctx()
    assert c.init()
    yield c
    c.exit()


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    """A topic no other test uses."""
    return f"test/{request.node.name}/{uuid.uuid4().hex[:8]}"


def read_packet(sock: socket.socket) -> Optional[bytes]:
    """One MQTT packet (fixed header included), or None at end of stream."""
    head = sock.recv(1)
    if not head:
        return None
    length = 0
    mult = 1
    raw = bytearray(head)
    while True:
        b = sock.recv(1)
        if not b:
            return None
        raw += b
        length += (b[0] & 0x7F) * mult
        mult *= 128
        if not b[0] & 0x80:
            break
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            return None
        body += chunk
    return bytes(raw) + body


class FakeBroker:
    """A minimal server for failure cases.

    `mode`: "silent" never answers CONNECT; "accept" answers CONNACK 0 and
    then answers only what it is told to: SUBSCRIBE with `suback_code`,
    QoS 1 PUBLISH with `puback_code` (None: no answer); "refuse" answers
    CONNACK with `code`. CONNACK, SUBACK and PUBACK take the MQTT 5 form
    when the CONNECT asked for level 5.
    """

    def __init__(
        self,
        mode: str,
        code: int = 0,
        suback_code: Optional[int] = None,
        puback_code: Optional[int] = None,
    ) -> None:
        self.mode = mode
        self.code = code
        self.suback_code = suback_code
        self.puback_code = puback_code
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.clients: List[socket.socket] = []
        self.received: List[bytes] = []
        self.connected = threading.Event()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.clients.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        try:
            connect = read_packet(c)
            if connect is None:
                return
            self.connected.set()
            if self.mode == "silent":
                while c.recv(4096):
                    pass
                return
            # The protocol level follows the 2-byte-length protocol name.
            name_len = struct.unpack(">H", connect[2:4])[0]
            level = connect[4 + name_len]
            code = self.code if self.mode == "refuse" else 0
            if level == 5:
                c.sendall(bytes([0x20, 3, 0, code, 0]))
            else:
                c.sendall(bytes([0x20, 2, 0, code]))
            while True:
                p = read_packet(c)
                if p is None:
                    return
                self.received.append(p)
                self._answer(c, p, level)
        except OSError:
            return

    @staticmethod
    def _body_start(p: bytes) -> int:
        i = 1
        while p[i] & 0x80:
            i += 1
        return i + 1

    def _answer(self, c: socket.socket, p: bytes, level: int) -> None:
        kind = p[0] >> 4
        start = self._body_start(p)
        if kind == 8 and self.suback_code is not None:  # SUBSCRIBE
            pid = p[start : start + 2]
            if level == 5:
                c.sendall(bytes([0x90, 4]) + pid + bytes([0, self.suback_code]))
            else:
                c.sendall(bytes([0x90, 3]) + pid + bytes([self.suback_code]))
        elif kind == 3 and (p[0] >> 1) & 3 == 1 and self.puback_code is not None:  # PUBLISH QoS 1
            tlen = struct.unpack(">H", p[start : start + 2])[0]
            pid = p[start + 2 + tlen : start + 4 + tlen]
            if level == 5:
                c.sendall(bytes([0x40, 4]) + pid + bytes([self.puback_code, 0]))
            else:
                c.sendall(bytes([0x40, 2]) + pid)

    def drop_clients(self) -> None:
        for c in self.clients:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def close(self) -> None:
        self._closed = True
        self.sock.close()
        self.drop_clients()


@pytest.fixture
def fake_broker() -> Iterator[Callable[..., FakeBroker]]:
    made: List[FakeBroker] = []

    def make(mode: str, code: int = 0, **kw: Optional[int]) -> FakeBroker:
        b = FakeBroker(mode, code, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


class Proxy:
    """A TCP proxy to `port` whose connections can be cut (`drop()`), to
    lose a connection underneath a client."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.pairs: List[socket.socket] = []
        self.accepted = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection((HOST, self.target))
            except OSError:
                c.close()
                continue
            self.accepted += 1
            self.pairs += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def drop(self) -> None:
        """Cuts every connection made so far."""
        pairs, self.pairs = self.pairs, []
        for s in pairs:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self._closed = True
        self.sock.close()
        self.drop()


@pytest.fixture
def proxy(mosquitto: Mosquitto) -> Iterator[Proxy]:
    p = Proxy(mosquitto.port)
    yield p
    p.close()
