"""asyncio client: ``myqtt.aio.connect()`` and :class:`AsyncClient`.

::

    async with myqtt.aio.connect("localhost", 1883) as c:
        await c.subscribe("sensors/#", qos=1)
        await c.publish("sensors/1", b"21.5", qos=1)
        async for msg in c.messages():
            print(msg.topic, msg.payload)

The engine runs on its own threads. An operation starts there and its
result comes back on the module's completion thread, which resolves an
asyncio future with ``loop.call_soon_threadsafe``: the event loop never
blocks, and nothing relies on ``loop.add_reader``, so every event loop works
(Windows' default proactor loop included). Timeouts are in seconds.
"""

from __future__ import annotations

import asyncio
from typing import (
    Any,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    List,
    Mapping,
    Optional,
    Tuple,
    TypeVar,
    Union,
)

from myqtt import _myqtt
from myqtt._myqtt import ConnectionLostError, Msg, PublishHandle, TimeoutError
from myqtt.client import (
    Payload,
    PropertiesArg,
    SubscribeResult,
    Subscriptions,
    Will,
    _conn_opts,
    _refused,
    default_ctx,
)

__all__ = ["AsyncClient", "connect"]

T = TypeVar("T")

#: Messages taken without suspending before the iterator yields to the loop.
_FAST_PATH_BURST = 32


def _settle(fut: "asyncio.Future[Any]", exc: Optional[BaseException], value: Any) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)


def _bridge(
    loop: asyncio.AbstractEventLoop,
    settle: Callable[["asyncio.Future[Any]", Optional[BaseException], Any], None] = _settle,
) -> Tuple["asyncio.Future[Any]", Callable[[Optional[BaseException], Any], None]]:
    """A future and the callback (run on the completion thread) that
    resolves it on the loop."""
    fut: asyncio.Future[Any] = loop.create_future()

    def callback(exc: Optional[BaseException], value: Any) -> None:
        try:
            loop.call_soon_threadsafe(settle, fut, exc, value)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more

    return fut, callback


async def _within(fut: "asyncio.Future[T]", timeout: Optional[float]) -> T:
    if timeout is None:
        return await fut
    try:
        return await asyncio.wait_for(fut, timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"no answer within {timeout} s") from None


class AsyncClient:
    """A connected asyncio client, from :func:`connect`."""

    def __init__(self, conn: _myqtt.Conn, loop: asyncio.AbstractEventLoop) -> None:
        self._conn = conn
        self._loop = loop
        self._closing = False
        # The one engine-side wait for a message, if any. A get_message that
        # times out leaves it in place (shielded), so the message it takes
        # goes to the next get_message instead of being lost or racing a
        # second wait.
        self._pending: Optional["asyncio.Future[Any]"] = None
        # Held while a publish waits for room in the send queue, so that
        # publishes keep their order.
        self._send_lock = asyncio.Lock()
        self._burst = 0

    @property
    def native(self) -> _myqtt.Conn:
        """The underlying :class:`myqtt.Conn`."""
        return self._conn

    @property
    def client_id(self) -> Optional[str]:
        """The client identifier in use."""
        return self._conn.client_id

    @property
    def protocol(self) -> int:
        """The protocol level: 3, 4 or 5."""
        return self._conn.protocol

    def is_connected(self) -> bool:
        """True while connected."""
        return self._conn.is_ok()

    async def publish(
        self,
        topic: str,
        payload: Payload = b"",
        qos: int = 0,
        retain: bool = False,
        properties: PropertiesArg = None,
        wait: bool = True,
        timeout: Optional[float] = 10.0,
    ) -> PublishHandle:
        """Publishes; with ``wait`` returns once acknowledged (see
        :meth:`myqtt.Client.publish`), otherwise once queued. Raises
        :class:`myqtt.TimeoutError`, :class:`myqtt.RefusedError`,
        :class:`myqtt.ConnectionLostError`."""
        handle: Optional[PublishHandle] = None
        if not self._send_lock.locked():
            handle = self._conn.try_publish(topic, payload, qos, retain, properties)
        if handle is None:
            async with self._send_lock:
                fut, cb = _bridge(self._loop)
                self._conn.publish_async(cb, topic, payload, qos, retain, properties)
                queued: PublishHandle = await _within(fut, timeout)
                handle = queued
        if wait:
            await self.wait_published(handle, timeout)
        return handle

    async def wait_published(
        self, handle: PublishHandle, timeout: Optional[float] = None
    ) -> PublishHandle:
        """Waits until a publish completes; raises if it failed."""
        if not handle.done():
            fut, cb = _bridge(self._loop)
            handle.add_done_callback(cb)
            await _within(fut, timeout)
        # Done: returns at once, or raises the publish's error.
        return handle.wait(0)

    async def subscribe(
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
        """Subscribes (see :meth:`myqtt.Client.subscribe`)."""
        fut, cb = _bridge(self._loop)
        self._conn.subscribe_async(
            cb,
            subscriptions,
            qos,
            no_local=no_local,
            retain_as_published=retain_as_published,
            retain_handling=retain_handling,
            properties=properties,
        )
        codes: List[int] = await _within(fut, timeout)
        if any(c >= 0x80 for c in codes):
            raise _refused("subscribe", codes)
        return SubscribeResult(codes)

    async def unsubscribe(
        self,
        topics: Union[str, Iterable[str]],
        properties: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = 10.0,
    ) -> List[int]:
        """Unsubscribes (see :meth:`myqtt.Client.unsubscribe`)."""
        fut, cb = _bridge(self._loop)
        self._conn.unsubscribe_async(cb, topics, properties)
        codes: List[int] = await _within(fut, timeout)
        if any(c >= 0x80 for c in codes):
            raise _refused("unsubscribe", codes)
        return codes

    async def ping(self, timeout: Optional[float] = 10.0) -> float:
        """Sends PINGREQ; returns the round trip in seconds."""
        fut, cb = _bridge(self._loop)
        self._conn.ping_async(cb)
        rtt: float = await _within(fut, timeout)
        return rtt

    async def get_message(self, timeout: Optional[float] = None) -> Optional[Msg]:
        """The next message, waiting up to ``timeout`` seconds; None on
        timeout or after :meth:`close`. Raises
        :class:`myqtt.ConnectionLostError` if the connection was lost."""
        try:
            if self._pending is None:
                msg = self._conn.try_next_message()
                if msg is not None:
                    self._burst += 1
                    if self._burst >= _FAST_PATH_BURST:
                        # Messages keep coming: let other tasks run.
                        self._burst = 0
                        await asyncio.sleep(0)
                    return msg
                self._burst = 0
                fut, cb = _bridge(self._loop)
                self._conn.next_message_async(cb)
                self._pending = fut
            pending = self._pending
            try:
                msg = await _within(asyncio.shield(pending), timeout)
            except TimeoutError:
                return None
            finally:
                if pending.done():
                    self._pending = None
            return msg
        except ConnectionLostError:
            if self._closing:
                return None
            raise

    async def messages(self, timeout: Optional[float] = None) -> AsyncIterator[Msg]:
        """Iterates over received messages; ends when none comes within
        ``timeout`` seconds (None: never) or after :meth:`close`."""
        while True:
            msg = await self.get_message(timeout)
            if msg is None:
                return
            yield msg

    async def close(self) -> None:
        """Closes with DISCONNECT (the will is discarded)."""
        self._closing = True
        fut, cb = _bridge(self._loop)
        self._conn.close_async(cb)
        await fut

    async def shutdown(self) -> None:
        """Drops the connection without DISCONNECT (the server publishes the
        will)."""
        self._closing = True
        fut, cb = _bridge(self._loop)
        self._conn.shutdown_async(cb)
        await fut

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<myqtt.aio.AsyncClient {self._conn!r}>"


class _Connecting:
    """What :func:`connect` returns: await it, or use it with ``async with``."""

    def __init__(self, start: Callable[[], "asyncio.Future[AsyncClient]"]) -> None:
        self._start = start
        self._client: Optional[AsyncClient] = None

    def __await__(self) -> Generator[Any, None, AsyncClient]:
        return self._start().__await__()

    async def __aenter__(self) -> AsyncClient:
        self._client = await self._start()
        return self._client

    async def __aexit__(self, *exc_info: object) -> None:
        if self._client is not None:
            await self._client.close()


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
    ctx: Optional[_myqtt.Ctx] = None,
) -> _Connecting:
    """Connects without blocking the event loop; ``await`` the result or use
    it with ``async with``. Arguments and errors as in
    :func:`myqtt.connect`."""
    opts = _conn_opts(
        username=username,
        password=password,
        will=will,
        protocol=protocol,
        properties=properties,
        reconnect=reconnect,
        timeout=timeout,
    )

    async def start() -> AsyncClient:
        loop = asyncio.get_running_loop()
        fut, cb = _bridge(loop)
        _myqtt.connect_async(
            cb,
            ctx if ctx is not None else default_ctx(),
            host,
            port,
            client_id,
            clean_start,
            keep_alive,
            opts,
        )
        conn: _myqtt.Conn = await fut
        return AsyncClient(conn, loop)

    def begin() -> "asyncio.Future[AsyncClient]":
        return asyncio.ensure_future(start())

    return _Connecting(begin)
