"""Publisher loop benchmark: QoS 0, 64-byte payloads, myqtt against
paho-mqtt 2.2 in the same run, on a mosquitto started for the run.

    python test/python/bench_client_publish.py [-n 200000]

Build the package with `maturin develop --release` first: a debug build is
several times slower.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import paho.mqtt.client as paho  # noqa: E402

import myqtt  # noqa: E402
from conftest import HOST, Mosquitto  # noqa: E402

PAYLOAD = b"x" * 64
TOPIC = "bench/publish"


def rate(name: str, fn: Callable[[int], None], n: int) -> float:
    start = time.perf_counter()
    fn(n)
    r = n / (time.perf_counter() - start)
    print(f"{name:46s} {r:12,.0f} msg/s")
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=200_000, help="messages per myqtt run")
    n = ap.parse_args().n
    with tempfile.TemporaryDirectory() as d:
        broker = Mosquitto(d)
        broker.start()
        try:
            ctx = myqtt.Ctx()
            ctx.init()
            conn = myqtt.Conn(ctx, HOST, broker.port, "bench-pymyqtt", True, 60)

            def pymyqtt(k: int) -> None:
                pub = conn.pub
                for _ in range(k):
                    pub(TOPIC, PAYLOAD, 0, False, 0)

            client = myqtt.connect(HOST, broker.port, ctx=ctx)

            def pythonic(k: int) -> None:
                pub = client.publish
                for _ in range(k):
                    pub(TOPIC, PAYLOAD, 0, False, None, False)

            p = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-paho")
            p.connect(HOST, broker.port)
            p.loop_start()

            def with_paho(k: int) -> None:
                pub = p.publish
                for _ in range(k):
                    pub(TOPIC, PAYLOAD, 0)

            a = rate("myqtt Conn.pub (PyMyQtt API)", pymyqtt, n)
            b = rate("myqtt Client.publish(wait=False)", pythonic, n)
            c = rate("paho-mqtt publish() with loop_start()", with_paho, n // 4)
            print(f"Conn.pub / paho: {a / c:.1f}x   Client.publish / paho: {b / c:.1f}x")
            p.loop_stop()
            p.disconnect()
            client.close()
            conn.close()
            ctx.exit()
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
