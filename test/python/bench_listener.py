"""Throughput of a Python listener: publishes (QoS 0, 64 bytes unless
`--qos` / `--payload` say otherwise) through a
listener with no handler, with an `on_publish` that returns PUBLISH_OK,
and (if installed) amqtt with a plugin.

The load comes from publisher processes (myqtt.Conn, QoS 0 in a loop, then
one QoS 1 publish whose PUBACK says the listener has decided on everything
before it), so the interpreter under test only runs the listener. The rate
is the messages sent divided by the time from the common start to the last
PUBACK: what the listener takes in and decides on.

With `--myqtt-bench PATH`, the load is myqtt-bench's instead: P
publisher/subscriber pairs (Rust clients, closed loop), and the rate is
the delivered one.

Run: python test/python/bench_listener.py [--messages N] [--publishers P]
(scripts/bench-python.sh builds the release extension first.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import List, Optional

SERVE = r"""
import sys, myqtt
mode = sys.argv[1]
ctx = myqtt.Ctx(); ctx.init()
calls = [0]
if mode == "ok":
    def on_publish(ctx, conn, msg, data):
        calls[0] += 1
        return myqtt.PUBLISH_OK
    ctx.set_on_publish(on_publish)
elif mode == "ok-async":
    async def on_publish(ctx, conn, msg, data):
        calls[0] += 1
        return myqtt.PUBLISH_OK
    ctx.set_on_publish(on_publish)
l = myqtt.create_listener(ctx, "127.0.0.1", 0)
print(l.port, flush=True)
myqtt.wait_listeners(ctx, unlock_on_signal=True)
ctx.exit()
print("calls", calls[0], flush=True)
"""

AMQTT = r"""
import asyncio, socket, sys
from amqtt.broker import Broker
from amqtt.plugins.base import BasePlugin

CALLS = [0]

class Counter(BasePlugin):
    async def on_broker_message_received(self, *, client_id, message):
        CALLS[0] += 1

s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
config = {
    "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
    "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
                "__main__.Counter": {}},
}
async def main():
    b = Broker(config)
    await b.start()
    print(port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await b.shutdown()
    print("calls", CALLS[0], flush=True)
import signal
asyncio.run(main())
"""


def serve(code: str, *args: str) -> "tuple[subprocess.Popen[str], int]":
    p = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None
    line = p.stdout.readline()
    if not line:
        p.wait()
        raise RuntimeError("the listener did not start")
    return p, int(line)


PUBLISH = r"""
import sys, myqtt
port, n, qos, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ctx = myqtt.Ctx(); ctx.init()
conn = myqtt.Conn(ctx, "127.0.0.1", port, None, True, 60)
assert conn.is_ok(), conn.error_msg
payload = b"x" * size
print("ready", flush=True)
sys.stdin.readline()
# wait_publish=0: queued, not waited for (at QoS 1 the send queue bounds
# what is in flight).
for _ in range(n):
    conn.pub("bench", payload, qos, False, 0)
# QoS 1 after the QoS 0 burst: its PUBACK means the listener has taken
# (and decided on) every message before it on this connection.
assert conn.pub("bench/done", b"", 1, False, 60)
print("done", flush=True)
conn.close(); ctx.exit()
"""


QOS = 0
PAYLOAD = 64


def run_load(port: int, messages: int, publishers: int) -> "tuple[int, float]":
    """Each publisher (a myqtt.Conn in its own process) sends `messages`
    QoS 0 publishes and then one QoS 1 publish; the rate counts from the
    common start to the last PUBACK."""
    pubs = [
        subprocess.Popen(
            [sys.executable, "-c", PUBLISH, str(port), str(messages), str(QOS), str(PAYLOAD)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(publishers)
    ]
    for p in pubs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    for p in pubs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in pubs:
        assert p.stdout is not None and p.stdout.readline().strip() == "done"
    secs = time.perf_counter() - start
    for p in pubs:
        p.wait(30)
    return messages * publishers, secs


def run_myqtt_bench(bench: str, port: int, publishers: int) -> "tuple[int, float]":
    """myqtt-bench (Rust publishers and subscribers, 1to1 pairs, closed
    loop): messages delivered and the seconds they took."""
    out = subprocess.run(
        [bench, "--port", str(port), "--shape", "1to1", "--publishers", str(publishers),
         "--duration", "3", "--warmup", "1", "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    report = json.loads(out.strip().splitlines()[-1])
    return int(report["deliveries"]), report["deliveries"] / report["delivery_rate"]


BENCH: Optional[str] = None


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(name: str, code: str, args: List[str], n: int, p: int,
            handler: bool = False) -> Optional[float]:
    """The listener's rate; also its CPU time per message (steadier than
    the rate on a loaded machine) and, with a handler, a check that the
    handler was called for every message."""
    try:
        proc, port = serve(code, *args)
    except Exception as e:  # noqa: BLE001 - report and go on
        print(f"{name:<28} unavailable: {e}")
        return None
    have_proc = os.path.exists(f"/proc/{proc.pid}/stat")
    try:
        cpu0 = cpu_seconds(proc.pid) if have_proc else 0.0
        if BENCH:
            received, secs = run_myqtt_bench(BENCH, port, p)
            expected = received
        else:
            received, secs = run_load(port, n, p)
            expected = n * p
        cpu = cpu_seconds(proc.pid) - cpu0 if have_proc else 0.0
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    rate = received / secs
    cpu_note = f", listener CPU {cpu / received * 1e6:5.2f} us/msg" if have_proc else ""
    print(f"{name:<28} {received:>8} msgs in {secs:6.2f} s = {rate:>10,.0f} msg/s{cpu_note}"
          f"{'' if received == expected else f'  ({expected - received} lost)'}")
    if handler and not BENCH:
        calls = [int(line.split()[1]) for line in out.splitlines() if line.startswith("calls ")]
        # Every QoS 0 message and each publisher's final QoS 1 one.
        if calls != [n * p + p]:
            raise SystemExit(f"{name}: the handler ran {calls} times, expected {n * p + p}")
    return rate


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=200_000, help="per publisher")
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--qos", type=int, default=0, choices=[0, 1, 2])
    ap.add_argument("--payload", type=int, default=64, help="payload bytes")
    ap.add_argument("--amqtt", action="store_true", help="also measure amqtt (if installed)")
    ap.add_argument("--myqtt-bench", default=None,
                    help="path of myqtt-bench: publish/subscribe pairs instead (delivered rate)")
    a = ap.parse_args()
    global BENCH, QOS, PAYLOAD
    BENCH = a.myqtt_bench
    QOS, PAYLOAD = a.qos, a.payload
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"QoS {a.qos}, {a.payload} B payloads, {a.publishers} publisher(s) x {a.messages} "
          f"messages, no subscriber; {os.cpu_count()} CPUs, load average {load}")
    none = measure("myqtt, no handler", SERVE, ["none"], a.messages, a.publishers)
    ok = measure("myqtt, on_publish OK", SERVE, ["ok"], a.messages, a.publishers, True)
    aok = measure("myqtt, async on_publish OK", SERVE, ["ok-async"], a.messages,
                  a.publishers, True)
    amq = None
    if a.amqtt:
        # Fewer messages (amqtt is slow): the rate, not the count, compares.
        amq = measure("amqtt + plugin", AMQTT, [], max(a.messages // 20, 1000), a.publishers,
                      True)
    if none and ok:
        print(f"on_publish OK / no handler: {ok / none:.0%}")
    if none and aok:
        print(f"async on_publish OK / no handler: {aok / none:.0%}")
    if ok and amq:
        print(f"on_publish OK / amqtt: {ok / amq:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
