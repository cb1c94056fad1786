"""The Pythonic client: ``myqtt.connect()`` and :class:`Client`.

Failures raise :class:`myqtt.MyqttError` subclasses instead of returning
status values::

    with myqtt.connect("localhost", 1883) as conn:
        conn.subscribe("sensors/#", qos=1)
        conn.publish("sensors/1", b"21.5", qos=1)     # waits for the PUBACK
        for msg in conn.messages(timeout=5):
            print(msg.topic, msg.payload)

Every blocking call releases the GIL and can be interrupted with Ctrl-C.
Timeouts are in seconds (``None``: no limit).
"""

from __future__ import annotations

import threading
from typing import (
    Any,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from myqtt._myqtt import (
    Conn,
    ConnectionLostError,
    ConnOpts,
    Ctx,
    Msg,
    Properties,
    PublishHandle,
    RefusedError,
)

__all__ = [
    "Client",
    "SubscribeResult",
    "Will",
    "connect",
    "default_ctx",
]

Payload = Union[bytes, bytearray, memoryview, str, None]
PropertiesArg = Union[Mapping[str, Any], Properties, None]
Subscriptions = Union[str, Sequence[Union[str, Tuple[str, int]]]]

_default_ctx: Optional[Ctx] = None
_default_lock = threading.Lock()


def default_ctx() -> Ctx:
    """The context ``connect()`` uses when none is given, created and
    initialised on first use."""
    global _default_ctx
    with _default_lock:
        if _default_ctx is None or not _default_ctx.is_initialized:
            ctx = Ctx()
            ctx.init()
            _default_ctx = ctx
        return _default_ctx


class Will(NamedTuple):
    """A will: published by the server if the connection ends without
    DISCONNECT (:meth:`Client.shutdown`, a lost link), not after
    :meth:`Client.close`."""

    topic: str
    payload: Payload = b""
    qos: int = 0
    retain: bool = False
    #: MQTT 5 will properties (those of a message plus ``will_delay_interval``).
    properties: PropertiesArg = None


class SubscribeResult(NamedTuple):
    """The SUBACK of a successful subscribe."""

    #: One code per filter as the server sent it: the granted QoS (0, 1, 2).
    reason_codes: List[int]

    @property
    def granted_qos(self) -> List[int]:
        """The QoS granted to each filter."""
        return list(self.reason_codes)


def _conn_opts(
    *,
    username: Optional[str],
    password: Union[str, bytes, None],
    will: Union[Will, Tuple[Any, ...], None],
    protocol: int,
    properties: Optional[Mapping[str, Any]],
    reconnect: Union[bool, Mapping[str, Any]],
    timeout: Optional[float],
) -> ConnOpts:
    opts = ConnOpts()
    opts.set_protocol(protocol)
    if username is not None or password is not None:
        opts.set_auth(username, password)
    if will is not None:
        w = will if isinstance(will, Will) else Will(*will)
        opts.set_will(w.qos, w.topic, w.payload, w.retain, w.properties)
    if properties:
        opts.set_properties(properties)
    if reconnect:
        if isinstance(reconnect, Mapping):
            opts.set_reconnect(True, **reconnect)
        else:
            opts.set_reconnect(True)
    if timeout is not None:
        opts.set_connect_timeout(timeout)
    return opts


def _refused(what: str, codes: List[int]) -> RefusedError:
    failed = [c for c in codes if c >= 0x80]
    err = RefusedError(f"{what} refused by the server: reason codes {codes}")
    err.reason_code = failed[0]  # type: ignore[attr-defined]
    err.reason_codes = codes  # type: ignore[attr-defined]
    return err


class Client:
    """A connected client, from :func:`connect`. Use it as a context manager
    to close it at the end of the block."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self._closing = False

    # ----- information -----

    @property
    def native(self) -> Conn:
        """The underlying :class:`myqtt.Conn` (PyMyQtt's API)."""
        return self._conn

    @property
    def client_id(self) -> Optional[str]:
        """The client identifier in use (assigned by an MQTT 5 server when
        none was given)."""
        return self._conn.client_id

    @property
    def protocol(self) -> int:
        """The protocol level: 3, 4 or 5."""
        return self._conn.protocol

    @property
    def session_present(self) -> bool:
        """Whether the server resumed a session at the last CONNACK."""
        return self._conn.session_present

    def is_connected(self) -> bool:
        """True while connected (False during an automatic reconnection)."""
        return self._conn.is_ok()

    # ----- operations -----

    def publish(
        self,
        topic: str,
        payload: Payload = b"",
        qos: int = 0,
        retain: bool = False,
        properties: PropertiesArg = None,
        wait: bool = True,
        timeout: Optional[float] = 10.0,
    ) -> PublishHandle:
        """Publishes ``payload`` (bytes-like or str) to ``topic``.

        With ``wait`` (the default) returns once the message is acknowledged
        (PUBACK at QoS 1, PUBCOMP at QoS 2, written to the socket at QoS 0);
        otherwise once it is queued. Returns a :class:`myqtt.PublishHandle`
        with ``packet_id`` and the MQTT 5 ``reason_code``, whose ``wait()``
        always resolves. Raises :class:`myqtt.TimeoutError`,
        :class:`myqtt.RefusedError` (MQTT 5 failure code),
        :class:`myqtt.ConnectionLostError`.
        """
        handle = self._conn.publish(topic, payload, qos, retain, properties, timeout)
        if wait:
            handle.wait(timeout)
        return handle

    def subscribe(
        self,
        subscriptions: Subscriptions,
        qos: int = 0,
        *,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: int = 0,
        properties: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = 10.0,
    ) -> SubscribeResult:
        """Subscribes to a filter, or a list of filters and ``(filter, qos)``
        pairs, in one SUBSCRIBE. Returns the granted QoS per filter; raises
        :class:`myqtt.RefusedError` (with ``reason_code`` and
        ``reason_codes``) if the server refused any filter."""
        codes = self._conn.subscribe(
            subscriptions,
            qos,
            no_local=no_local,
            retain_as_published=retain_as_published,
            retain_handling=retain_handling,
            properties=properties,
            timeout=timeout,
        )
        if any(c >= 0x80 for c in codes):
            raise _refused("subscribe", codes)
        return SubscribeResult(codes)

    def unsubscribe(
        self,
        topics: Union[str, Iterable[str]],
        properties: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = 10.0,
    ) -> List[int]:
        """Unsubscribes; one reason code per filter (MQTT 5; all 0 before).
        A failure code raises :class:`myqtt.RefusedError`; 0x11 (no
        subscription existed) does not."""
        codes = self._conn.unsubscribe(topics, properties, timeout)
        if any(c >= 0x80 for c in codes):
            raise _refused("unsubscribe", codes)
        return codes

    def get_message(self, timeout: Optional[float] = None) -> Optional[Msg]:
        """The next message, waiting up to ``timeout`` seconds; None on
        timeout or once the connection was closed with :meth:`close`.
        Raises :class:`myqtt.ConnectionLostError` if it was lost."""
        try:
            return self._conn.next_message(timeout)
        except ConnectionLostError:
            if self._closing:
                return None
            raise

    def messages(self, timeout: Optional[float] = None) -> Iterator[Msg]:
        """Iterates over received messages. Ends when none comes within
        ``timeout`` seconds (None: never) or after :meth:`close`; raises
        :class:`myqtt.ConnectionLostError` if the connection is lost (with
        automatic reconnection on, it waits for the reconnection instead)."""
        while True:
            msg = self.get_message(timeout)
            if msg is None:
                return
            yield msg

    def ping(self, timeout: Optional[float] = 10.0) -> float:
        """Sends PINGREQ; returns the round trip in seconds."""
        return self._conn.ping_rtt(timeout)

    def close(self) -> None:
        """Closes with DISCONNECT (the will is discarded) and waits for it."""
        self._closing = True
        self._conn.close()

    def shutdown(self) -> None:
        """Drops the connection without DISCONNECT: the server publishes
        the will."""
        self._closing = True
        self._conn.shutdown()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<myqtt.Client {self._conn!r}>"


def connect(
    host: str,
    port: Union[int, str] = 1883,
    *,
    client_id: Optional[str] = None,
    clean_start: bool = True,
    keep_alive: int = 60,
    username: Optional[str] = None,
    password: Union[str, bytes, None] = None,
    will: Union[Will, Tuple[Any, ...], None] = None,
    protocol: int = 4,
    properties: Optional[Mapping[str, Any]] = None,
    reconnect: Union[bool, Mapping[str, Any]] = False,
    timeout: Optional[float] = 10.0,
    ctx: Optional[Ctx] = None,
) -> Client:
    """Connects and returns a :class:`Client`; raises on failure.

    ``protocol``: 4 (MQTT 3.1.1, default), 5 or 3. ``properties``: MQTT 5
    CONNECT properties (``session_expiry_interval``, ``user_properties``...).
    ``will``: a :class:`Will` or a ``(topic, payload, qos, retain)`` tuple.
    ``reconnect``: True, or a dict of ``initial_delay``, ``max_delay``,
    ``max_attempts``. ``timeout``: seconds for the TCP connection and the
    CONNACK together. ``ctx``: a :class:`myqtt.Ctx` (default: a shared one).

    Raises :class:`myqtt.ConnectionRefusedError` (``reason_code``: the
    CONNACK's code as sent: a 3.1.1 return code or an MQTT 5 reason code),
    :class:`myqtt.ConnectError` (no TCP connection),
    :class:`myqtt.TimeoutError`.
    """
    opts = _conn_opts(
        username=username,
        password=password,
        will=will,
        protocol=protocol,
        properties=properties,
        reconnect=reconnect,
        timeout=timeout,
    )
    conn = Conn(
        ctx if ctx is not None else default_ctx(),
        host,
        port,
        client_id,
        clean_start,
        keep_alive,
        opts,
    )
    if not conn.is_ok():
        exc = conn.last_exception
        if exc is None:  # pragma: no cover - a failed connect always records why
            raise ConnectionLostError("the connection closed right after connecting")
        raise exc
    return Client(conn)
