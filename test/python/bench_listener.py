"""Throughput of a Python listener: publishes (QoS 0, 64 bytes unless
`--qos` / `--payload` say otherwise) through a
listener with no handler, with an `on_publish` that returns PUBLISH_OK,
the same as a coroutine, and (with `--amqtt`, if installed) amqtt with a
plugin. Each listener runs in its own process; the rate is the messages
sent divided by the time from the common start to the last PUBACK of a
QoS 1 publish sent after them (what the listener takes in and decides on),
and the listener's CPU time per message (user + system, all threads) is
reported beside it.

Loads (`--load`):

- `raw` (the default): one process writes pre-encoded PUBLISH packets
  from memory on P sockets as fast as the kernel takes them (a Python
  loop of `sendall` on 64 KiB buffers costs far less per message than any
  listener), then one QoS 1 publish per socket. On a machine with two
  cores or more, the listener (all its threads: engine workers and Python
  dispatch threads) is pinned to one core and the load and this script to
  another (`--no-pin` to leave them free), so the listener is the
  bottleneck and does not share its core with the load. QoS 0 only. The
  modes are measured interleaved, `--rounds` times (default 3), and the
  summary gives each mode's median and range.
- `conn`: P publisher processes (myqtt.Conn, `pub(..., wait_publish=0)`
  in a loop, then one QoS 1 publish), the older load: Python publishers,
  on the same cores as the listener, often bound the rate themselves.

With `--myqtt-bench PATH`, the load is myqtt-bench's instead: P
publisher/subscriber pairs (Rust clients, closed loop), and the rate is
the delivered one.

Run: python test/python/bench_listener.py [--load raw|conn] [--rounds R]
[--messages N] [--publishers P] [--amqtt]
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


# Cores for the listener and for the load (`raw` load only); None: no
# pinning.
PIN: "Optional[tuple[int, int]]" = None


def pin_to(core: int) -> None:
    """Pins the calling process (and the threads it starts later)."""
    os.sched_setaffinity(0, {core})


def serve(code: str, *args: str) -> "tuple[subprocess.Popen[str], int]":
    """Starts a listener process (pinned to the listener's core when
    pinning): its pid and port. The engine's worker threads and the
    dispatch threads inherit the affinity (and size themselves to it)."""
    p = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: pin_to(PIN[0])) if PIN else None,
    )
    assert p.stdout is not None
    line = p.stdout.readline()
    if not line:
        p.wait()
        raise RuntimeError("the listener did not start")
    return p, int(line)


BLAST = r"""
import socket, struct, sys, threading
port, n, size, conns = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def varint(x):
    out = bytearray()
    while True:
        b, x = x & 0x7F, x >> 7
        out.append(b | (0x80 if x else 0))
        if not x:
            return bytes(out)

def packet(kind, body):
    return bytes([kind]) + varint(len(body)) + body

def string(b):
    return struct.pack("!H", len(b)) + b

def read_exactly(s, k):
    got = b""
    while len(got) < k:
        chunk = s.recv(k - len(got))
        if not chunk:
            raise SystemExit("the listener closed the connection")
        got += chunk
    return got

# PUBLISH QoS 0, topic "bench", `size` bytes; about 64 KiB of them per write.
one = packet(0x30, string(b"bench") + b"x" * size)
per_chunk = max(1, 65536 // len(one))
chunk = one * per_chunk
done = packet(0x32, string(b"bench/done") + struct.pack("!H", 1))

socks = []
for i in range(conns):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # Plenty queued: the listener still has bytes to read while this
    # process waits for its core.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    # CONNECT, MQTT 3.1.1, clean session, keep alive 60 s.
    body = string(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60)
    s.sendall(packet(0x10, body + string(b"blast-%d" % i)))
    ack = read_exactly(s, 4)
    assert ack[0] == 0x20 and ack[3] == 0, ack
    socks.append(s)
print("ready", flush=True)
sys.stdin.readline()

def send(s):
    full, rest = divmod(n, per_chunk)
    for _ in range(full):
        s.sendall(chunk)
    s.sendall(one * rest + done)
    # The PUBACK of the QoS 1 publish sent last: the listener has taken
    # (and decided on) every message before it on this connection.
    ack = read_exactly(s, 4)
    assert ack == bytes([0x40, 2, 0, 1]), ack

threads = [threading.Thread(target=send, args=(s,)) for s in socks]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("done", flush=True)
for s in socks:
    s.sendall(bytes([0xE0, 0]))
    s.close()
"""


def run_raw(port: int, messages: int, publishers: int) -> "tuple[int, float]":
    """`messages` QoS 0 publishes on each of `publishers` sockets from one
    process (the load's core), then one QoS 1 publish each; the rate
    counts from the start to the last PUBACK."""
    load = subprocess.Popen(
        [sys.executable, "-c", BLAST, str(port), str(messages), str(PAYLOAD), str(publishers)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: pin_to(PIN[1])) if PIN else None,
    )
    assert load.stdout is not None and load.stdin is not None
    if load.stdout.readline().strip() != "ready":
        load.wait()
        raise RuntimeError("the load did not connect")
    load_cpu0 = cpu_seconds(load.pid)
    start = time.perf_counter()
    load.stdin.write("go\n")
    load.stdin.flush()
    if load.stdout.readline().strip() != "done":
        load.wait()
        raise RuntimeError("the load failed")
    secs = time.perf_counter() - start
    global LOAD_BUSY
    try:
        # The load's share of the time: near 100%, the load (or what else
        # runs on its core) and not the listener may be the bottleneck.
        LOAD_BUSY = (cpu_seconds(load.pid) - load_cpu0) / secs
    except OSError:
        LOAD_BUSY = None
    load.wait(30)
    return messages * publishers, secs


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
LOAD = "raw"
# The raw load's CPU time over the measured time, in the last run.
LOAD_BUSY: Optional[float] = None


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(name: str, code: str, args: List[str], n: int, p: int,
            handler: bool = False) -> "Optional[tuple[float, Optional[float], Optional[float]]]":
    """The listener's rate, its CPU time per message (steadier than the
    rate on a loaded machine) and its CPU time over the measured time (the
    last two None where /proc is missing); with a handler, a check that
    the handler was called for every message."""
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
        elif LOAD == "raw":
            received, secs = run_raw(port, n, p)
            expected = n * p
        else:
            received, secs = run_load(port, n, p)
            expected = n * p
        cpu = cpu_seconds(proc.pid) - cpu0 if have_proc else 0.0
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    rate = received / secs
    us = cpu / received * 1e6 if have_proc else None
    # The listener's CPU time over the measured time: well under 100% (of
    # the one core it is pinned to), something else held it back (the
    # load, or other work on its core), and the rate says less than the
    # CPU time per message.
    cpu_note = f", listener CPU {us:5.2f} us/msg ({cpu / secs:4.0%} busy)" if us is not None else ""
    if LOAD == "raw" and not BENCH and LOAD_BUSY is not None:
        cpu_note += f", load {LOAD_BUSY:4.0%} busy"
    print(f"{name:<28} {received:>8} msgs in {secs:6.2f} s = {rate:>10,.0f} msg/s{cpu_note}"
          f"{'' if received == expected else f'  ({expected - received} lost)'}", flush=True)
    if handler and not BENCH:
        calls = [int(line.split()[1]) for line in out.splitlines() if line.startswith("calls ")]
        # Every QoS 0 message and each publisher's final QoS 1 one.
        if calls != [n * p + p]:
            raise SystemExit(f"{name}: the handler ran {calls} times, expected {n * p + p}")
    return rate, us, (cpu / secs if have_proc else None)


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def spread(values: List[float], fmt: str) -> str:
    """The median and, with several values, the range."""
    v = sorted(values)
    mid = v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
    if len(v) == 1:
        return fmt.format(mid)
    return f"{fmt.format(mid)} ({fmt.format(v[0])} to {fmt.format(v[-1])})"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=None,
                    help="per connection (default: raw 500000, conn 200000; the coroutine handler "
                         "gets a quarter, amqtt 1/100)")
    ap.add_argument("--publishers", type=int, default=None,
                    help="publishing connections (default: raw 4, conn 2)")
    ap.add_argument("--qos", type=int, default=0, choices=[0, 1, 2])
    ap.add_argument("--payload", type=int, default=64, help="payload bytes")
    ap.add_argument("--load", choices=["raw", "conn"], default="raw",
                    help="raw: pre-encoded packets from one process on another core; "
                         "conn: myqtt.Conn publisher processes")
    ap.add_argument("--rounds", type=int, default=None,
                    help="measurements of every mode, interleaved (default: raw 3, conn 1)")
    ap.add_argument("--no-pin", action="store_true",
                    help="raw load: do not pin the listener and the load to their cores")
    ap.add_argument("--amqtt", action="store_true", help="also measure amqtt (if installed)")
    ap.add_argument("--myqtt-bench", default=None,
                    help="path of myqtt-bench: publish/subscribe pairs instead (delivered rate)")
    a = ap.parse_args()
    global BENCH, QOS, PAYLOAD, LOAD, PIN
    BENCH = a.myqtt_bench
    QOS, PAYLOAD, LOAD = a.qos, a.payload, a.load
    raw = LOAD == "raw" and not BENCH
    if raw and QOS != 0:
        ap.error("the raw load publishes at QoS 0: use --load conn for QoS 1 and 2")
    messages = a.messages or (500_000 if raw else 200_000)
    publishers = a.publishers or (4 if raw else 2)
    rounds = a.rounds or (3 if raw else 1)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if raw and not a.no_pin and len(cores) >= 2:
        PIN = (cores[0], cores[1])
        pin_to(PIN[1])
    where = (f"listener pinned to core {PIN[0]}, load and driver to core {PIN[1]}" if PIN
             else "nothing pinned")
    load = ("raw load (pre-encoded packets, one process)" if raw
            else "myqtt-bench pairs" if BENCH else "myqtt.Conn publisher processes")
    what = (f"{publishers} publisher/subscriber pair(s) for 3 s" if BENCH
            else f"{publishers} connection(s) x {messages} messages, no subscriber")
    print(f"QoS {QOS}, {PAYLOAD} B payloads, {what}, {load}; {os.cpu_count()} CPUs, {where}; "
          f"load average {load_average()}", flush=True)
    modes = [
        ("myqtt, no handler", SERVE, ["none"], messages, False),
        ("myqtt, on_publish OK", SERVE, ["ok"], messages, True),
        ("myqtt, async on_publish OK", SERVE, ["ok-async"], max(messages // 4, 1000), True),
    ]
    if a.amqtt:
        # Fewer messages (amqtt is slow): the rate, not the count, compares.
        modes.append(("amqtt + plugin", AMQTT, [], max(messages // 100, 1000), True))
    results: "dict[str, list[tuple[float, Optional[float], Optional[float]]]]" = {
        m[0]: [] for m in modes}
    for r in range(rounds):
        if rounds > 1:
            print(f"-- round {r + 1} of {rounds}, load average {load_average()}", flush=True)
        for name, code, args, n, handler in modes:
            got = measure(name, code, args, n, publishers, handler)
            if got is not None:
                results[name].append(got)
    print(f"-- summary (median, range over {rounds} round(s)); load average {load_average()}")
    for name, runs in results.items():
        if not runs:
            continue
        rates = [g[0] for g in runs]
        cpus = [g[1] for g in runs if g[1] is not None]
        cpu_note = f", listener CPU {spread(cpus, '{:.2f}')} us/msg" if cpus else ""
        print(f"{name:<28} {spread(rates, '{:,.0f}')} msg/s{cpu_note}")

    def ratio(a_name: str, b_name: str, kept_core: bool = False) -> Optional[List[float]]:
        """Rate ratios, round by round (the modes of one round ran seconds
        apart); with `kept_core`, only the rounds where both listeners
        were busy 90% of the time or more (nothing else held them back)."""
        x, y = results.get(a_name), results.get(b_name)
        if not x or not y:
            return None
        return [u[0] / v[0] for u, v in zip(x, y)
                if not kept_core or ((u[2] or 0) >= 0.9 and (v[2] or 0) >= 0.9)]

    def cpu_ratio(a_name: str, b_name: str) -> Optional[float]:
        x = [g[1] for g in results.get(a_name, []) if g[1]]
        y = [g[1] for g in results.get(b_name, []) if g[1]]
        if not x or not y:
            return None
        return (sorted(y)[len(y) // 2]) / (sorted(x)[len(x) // 2])

    for label, a_name, b_name in [
        ("on_publish OK / no handler", "myqtt, on_publish OK", "myqtt, no handler"),
        ("async on_publish OK / no handler", "myqtt, async on_publish OK", "myqtt, no handler"),
    ]:
        rs = ratio(a_name, b_name)
        if rs:
            c = cpu_ratio(a_name, b_name)
            c_note = f"; CPU per message no handler / handler {c:.0%}" if c else ""
            kept = ratio(a_name, b_name, True) if raw else None
            k_note = ""
            if kept is not None:
                k_note = (f"; rate in the {len(kept)} round(s) where both listeners kept their "
                          f"core: {spread([x * 100 for x in kept], '{:.0f}%')}" if kept
                          else "; no round where both listeners kept their core")
            print(f"{label}: rate {spread([x * 100 for x in rs], '{:.0f}%')}{c_note}{k_note}")
    rs = ratio("myqtt, on_publish OK", "amqtt + plugin")
    if rs:
        print(f"on_publish OK / amqtt: {spread(rs, '{:.1f}x')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
