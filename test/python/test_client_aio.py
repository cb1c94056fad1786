"""myqtt.aio: the asyncio client, bridged from the engine's threads with
call_soon_threadsafe (no add_reader)."""

from __future__ import annotations

import asyncio
import threading

import pytest

import myqtt
import myqtt.aio
from conftest import HOST


class NoReaderLoop(asyncio.SelectorEventLoop):
    """An event loop where add_reader/add_writer are unavailable, as on
    Windows' proactor loop: myqtt.aio must not need them."""

    def add_reader(self, *args, **kwargs):  # type: ignore[override]
        raise NotImplementedError("add_reader is not available on this loop")

    def add_writer(self, *args, **kwargs):  # type: ignore[override]
        raise NotImplementedError("add_writer is not available on this loop")


def run(coro):
    loop = NoReaderLoop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, 30))
    finally:
        loop.close()


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_subscribe_publish_and_iterate(mosquitto, topic, qos):
    async def main():
        async with myqtt.aio.connect(HOST, mosquitto.port) as c:
            assert c.is_connected()
            assert (await c.subscribe(topic, qos=qos)).granted_qos == [qos]
            handles = [await c.publish(topic, f"m{i}", qos=qos) for i in range(3)]
            assert all(h.done() and h.reason_code == 0 for h in handles)
            got = []
            async for msg in c.messages():
                got.append((msg.content, msg.qos))
                if len(got) == 3:
                    break
            return got

    assert run(main()) == [(f"m{i}", qos) for i in range(3)]


def test_the_event_loop_keeps_running_while_waiting(mosquitto, topic):
    ticks = 0

    async def ticker(stop):
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    async def main():
        stop = asyncio.Event()
        t = asyncio.ensure_future(ticker(stop))
        async with myqtt.aio.connect(HOST, mosquitto.port) as c:
            await c.subscribe(topic)
            assert await c.get_message(timeout=0.2) is None, "nothing was published"
        stop.set()
        await t

    run(main())
    assert ticks >= 10, "the loop ran other tasks during the waits"


def test_many_concurrent_publishes_complete_in_order(mosquitto, topic):
    async def main():
        async with myqtt.aio.connect(HOST, mosquitto.port) as c:
            await c.subscribe(topic, qos=1)
            handles = await asyncio.gather(
                *(c.publish(topic, str(i), qos=1, timeout=5) for i in range(200))
            )
            assert len({h.packet_id for h in handles}) > 1
            return [(await c.get_message(10)).content for _ in range(200)]

    assert run(main()) == [str(i) for i in range(200)]


def test_a_refused_connection_raises_with_the_reason_code(fake_broker):
    b = fake_broker("refuse", code=myqtt.CONNACK_BAD_USERNAME_OR_PASSWORD)

    async def main():
        async with myqtt.aio.connect(HOST, b.port, username="u", password="bad"):
            pass

    with pytest.raises(myqtt.ConnectionRefusedError) as e:
        run(main())
    assert e.value.reason_code == 4


def test_await_connect_returns_a_client(mosquitto):
    async def main():
        c = await myqtt.aio.connect(HOST, mosquitto.port, protocol=5)
        try:
            assert c.protocol == 5 and c.client_id
            assert await c.ping() >= 0
        finally:
            await c.close()

    run(main())


def test_timeouts_raise_and_a_lost_link_resolves_the_handle(fake_broker):
    b = fake_broker("accept")

    async def main():
        c = await myqtt.aio.connect(HOST, b.port)
        with pytest.raises(myqtt.TimeoutError):
            await c.publish("t", b"x", qos=1, timeout=0.1)
        h = await c.publish("t", b"y", qos=1, wait=False)
        assert not h.done()
        b.drop_clients()
        with pytest.raises(myqtt.ConnectionLostError):
            await c.wait_published(h, 10)
        with pytest.raises(myqtt.ConnectionLostError):
            await c.get_message(10)

    run(main())


def test_a_cancelled_wait_does_not_lose_the_message(mosquitto, topic):
    async def main():
        async with myqtt.aio.connect(HOST, mosquitto.port) as c:
            await c.subscribe(topic, qos=1)
            assert await c.get_message(timeout=0.05) is None
            # The engine-side wait is still there: it takes the next message,
            # which must come to the next get_message.
            await c.publish(topic, "kept", qos=1)
            msg = await c.get_message(timeout=10)
            return msg.content

    assert run(main()) == "kept"


def test_mqtt_5_properties_and_refused_subscribe(mosquitto, fake_broker, topic):
    b = fake_broker("accept", suback_code=0x87)

    async def main():
        async with myqtt.aio.connect(HOST, mosquitto.port, protocol=5) as c:
            await c.subscribe(topic, qos=1, properties={"subscription_identifier": 3})
            await c.publish(topic, "x", qos=1, properties={"user_properties": {"a": "b"}})
            msg = await c.get_message(10)
            assert msg.properties.user_properties == [("a", "b")]
            assert msg.properties.subscription_identifiers == [3]
            assert await c.unsubscribe(topic) == [0]
        async with myqtt.aio.connect(HOST, b.port, protocol=5) as c:
            with pytest.raises(myqtt.RefusedError) as e:
                await c.subscribe("a", qos=1)
            assert e.value.reason_code == 0x87

    run(main())


def test_messages_ends_after_close(mosquitto, topic):
    async def main():
        c = await myqtt.aio.connect(HOST, mosquitto.port)
        await c.subscribe(topic)

        async def consume():
            return [m async for m in c.messages()]

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.05)
        await c.close()
        return await task

    assert run(main()) == []


def test_the_default_event_loop_works_too(mosquitto, topic):
    async def main():
        async with myqtt.aio.connect(HOST, mosquitto.port) as c:
            await c.subscribe(topic, qos=2)
            await c.publish(topic, b"default loop", qos=2)
            return (await c.get_message(10)).payload

    assert asyncio.run(main()) == b"default loop"


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/task"), reason="Linux only")
def test_completions_never_run_on_the_loop_thread_or_a_tokio_worker(mosquitto):
    threads = []

    def os_thread_name():
        with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
            return f.read().strip()

    async def main():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def cb(exc, value):
            threads.append(os_thread_name())
            loop.call_soon_threadsafe(fut.set_result, value)

        ctx = myqtt.default_ctx()
        myqtt._myqtt.connect_async(cb, ctx, HOST, mosquitto.port)
        conn = await fut
        conn.close()

    run(main())
    assert threads == ["myqtt-completions"[:15]], "Linux keeps 15 characters of a thread name"


def test_shutdown_publishes_the_will_and_close_does_not(mosquitto, topic):
    async def main():
        async with myqtt.aio.connect(HOST, mosquitto.port) as watcher:
            await watcher.subscribe(topic + "/#", qos=1)
            a = await myqtt.aio.connect(HOST, mosquitto.port, will=myqtt.Will(topic + "/a", b"a gone", 1))
            b = await myqtt.aio.connect(HOST, mosquitto.port, will=myqtt.Will(topic + "/b", b"b gone", 1))
            await b.close()
            await a.shutdown()
            msg = await watcher.get_message(10)
            return msg.topic, msg.payload

    assert run(main()) == (topic + "/a", b"a gone")


def test_shutdown_drops_the_link_so_the_will_is_published(mosquitto, topic):
    # shutdown() sends no DISCONNECT: the server publishes the will
    # [MQTT-3.1.2-8]; close() (tested above) sends one, and no will goes out.
    async def main():
        async with myqtt.aio.connect(HOST, mosquitto.port) as watcher:
            await watcher.subscribe(topic, qos=1)
            c = await myqtt.aio.connect(
                HOST, mosquitto.port, will=myqtt.Will(topic, "gone", qos=1)
            )
            await c.shutdown()
            msg = await watcher.get_message(timeout=10)
            return None if msg is None else msg.content

    assert run(main()) == "gone"
