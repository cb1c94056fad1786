#!/usr/bin/env python3
"""The regression client: numbered tests against a running regression
listener (test/myqtt-regression-listener.py), PyMyQtt style.

Usage: myqtt-regression-client.py [--host H] [--port P]
Prints "Test NN: ... OK" for each test; exits non-zero on the first failure.
"""

import argparse
import os
import socket
import sys
import threading
import time

import myqtt

HOST = "127.0.0.1"
PORT = "1883"


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def new_ctx():
    ctx = myqtt.Ctx()
    check(ctx.init(), "ctx.init() failed")
    return ctx


def connect(ctx, client_id=None, opts=None, clean=True, keep_alive=30):
    conn = myqtt.Conn(ctx, HOST, PORT, client_id, clean, keep_alive, opts)
    check(conn.is_ok(), f"cannot connect to {HOST}:{PORT}: {conn.error_msg}")
    return conn


def admin(conn, request):
    """Asks the listener an admin question; returns the answer."""
    topic = "myqtt/admin/" + request
    status, _ = conn.sub(topic, myqtt.qos1, 10)
    check(status, f"subscribe to {topic} failed")
    check(conn.pub(topic, "", myqtt.qos1, False, 10), f"publish to {topic} failed")
    msg = conn.get_next(10000)
    check(msg is not None, f"no answer to {request}")
    check(msg.topic == topic, f"answer on {msg.topic}, expected {topic}")
    return msg.content


def cut_sockets_to_listener():
    """Shuts down, underneath the library, every socket of this process
    connected to the listener (the engine does not expose its sockets; the
    descriptors are found in /dev/fd). Returns how many."""
    port = int(PORT)
    cut = 0
    for name in os.listdir("/dev/fd"):
        try:
            s = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        try:
            if (
                s.family in (socket.AF_INET, socket.AF_INET6)
                and s.type == socket.SOCK_STREAM
                and s.getpeername()[1] == port
            ):
                s.shutdown(socket.SHUT_RDWR)
                cut += 1
        except OSError:
            pass
        finally:
            s.close()
    return cut


def test_01():
    """context init"""
    ctx = new_ctx()
    check(ctx.is_initialized, "context not initialised")
    ctx.exit()


def test_02():
    """connect and close"""
    ctx = new_ctx()
    conn = connect(ctx)
    check(conn.role == "client", f"role is {conn.role}")
    check(conn.close(), "close failed")
    check(not conn.is_ok(), "still ok after close")
    ctx.exit()


def test_03():
    """subscribe"""
    ctx = new_ctx()
    conn = connect(ctx)
    for qos in (myqtt.qos0, myqtt.qos1, myqtt.qos2):
        status, granted = conn.sub(f"regression/sub/{qos}", qos, 10)
        check(status and granted == qos, f"sub qos {qos}: {status} {granted}")
    conn.close()
    ctx.exit()


def test_04():
    """publish and subscribe between two connections"""
    ctx = new_ctx()
    a = connect(ctx)
    b = connect(ctx)
    check(a.sub("regression/04", myqtt.qos1, 10)[0], "sub failed")
    check(b.pub("regression/04", "hello from b", myqtt.qos1, False, 10), "pub failed")
    msg = a.get_next(10000)
    check(msg is not None and msg.content == "hello from b", f"got {msg}")
    check(msg.topic == "regression/04" and msg.qos == 1, "topic or qos differ")
    a.close()
    b.close()
    ctx.exit()


def test_05():
    """ping"""
    ctx = new_ctx()
    conn = connect(ctx)
    for _ in range(3):
        check(conn.ping(10), "no PINGRESP")
    conn.close()
    ctx.exit()


def test_06():
    """client id echo and duplicate id"""
    ctx = new_ctx()
    conn = connect(ctx, "regression-client-06")
    check(admin(conn, "get-client-identifier") == "regression-client-06", "client id echo")
    # A second connection with the same id takes the session over
    # [MQTT-3.1.4-2]: the first one is closed.
    second = connect(ctx, "regression-client-06")
    deadline = time.monotonic() + 10
    while conn.is_ok() and time.monotonic() < deadline:
        time.sleep(0.01)
    check(not conn.is_ok(), "the first connection survived a duplicate id")
    check(admin(second, "get-client-identifier") == "regression-client-06", "echo on 2nd")
    second.close()
    ctx.exit()


def test_07():
    """authentication"""
    ctx = new_ctx()
    opts = myqtt.ConnOpts()
    opts.set_auth("aspl", "wrong")
    bad = myqtt.Conn(ctx, HOST, PORT, None, True, 30, opts)
    check(not bad.is_ok(), "bad credentials accepted")
    opts = myqtt.ConnOpts()
    opts.set_auth("aspl", "test")
    good = connect(ctx, opts=opts)
    check(admin(good, "get-conn-user") == "aspl", "user echo")
    good.close()
    ctx.exit()


def test_08():
    """will after shutdown() but not after close()"""
    ctx = new_ctx()
    watcher = connect(ctx)
    check(watcher.sub("regression/08/will/#", myqtt.qos1, 10)[0], "sub failed")
    for name in ("closed", "shutdown"):
        opts = myqtt.ConnOpts()
        opts.set_will(myqtt.qos1, f"regression/08/will/{name}", f"{name} died", False)
        conn = connect(ctx, opts=opts)
        if name == "closed":
            conn.close()
        else:
            conn.shutdown()
    msg = watcher.get_next(10000)
    check(msg is not None and msg.topic == "regression/08/will/shutdown", f"got {msg}")
    # The marker comes after any will that could still arrive.
    check(watcher.sub("regression/08/marker", myqtt.qos1, 10)[0], "sub failed")
    check(watcher.pub("regression/08/marker", "m", myqtt.qos1, False, 10), "pub failed")
    msg = watcher.get_next(10000)
    check(msg is not None and msg.topic == "regression/08/marker", f"close() will: {msg}")
    watcher.close()
    ctx.exit()


def test_09():
    """8 KiB and 64 KiB messages at QoS 0/1/2"""
    ctx = new_ctx()
    a = connect(ctx)
    b = connect(ctx)
    check(a.sub("regression/09", myqtt.qos2, 10)[0], "sub failed")
    for size in (8 * 1024, 64 * 1024):
        payload = bytes(i % 251 for i in range(size))
        for qos in (myqtt.qos0, myqtt.qos1, myqtt.qos2):
            check(b.pub("regression/09", payload, qos, False, 10), f"pub {size} qos {qos}")
            msg = a.get_next(10000)
            check(msg is not None, f"no message of {size} bytes at qos {qos}")
            check(msg.payload == payload and msg.size == size, f"{size} bytes differ")
            check(msg.qos == qos, f"qos {msg.qos} != {qos}")
    a.close()
    b.close()
    ctx.exit()


def test_10():
    """request/reply over QoS 2"""
    ctx = new_ctx()
    server = connect(ctx)
    client = connect(ctx)

    def on_msg(ctx, conn, msg, data):
        conn.pub("regression/10/reply", b"re: " + msg.payload, myqtt.qos2, False, 10)

    check(server.sub("regression/10/request", myqtt.qos2, 10)[0], "sub failed")
    server.set_on_msg(on_msg)
    check(client.sub("regression/10/reply", myqtt.qos2, 10)[0], "sub failed")
    for i in range(5):
        check(client.pub("regression/10/request", f"q{i}", myqtt.qos2, False, 10), "pub")
        msg = client.get_next(10000)
        check(msg is not None and msg.content == f"re: q{i}", f"reply {i}: {msg}")
        check(msg.qos == 2, "reply not at QoS 2")
    server.close()
    client.close()
    ctx.exit()


def test_11():
    """reconnect after the socket is closed underneath"""
    ctx = new_ctx()
    opts = myqtt.ConnOpts()
    opts.set_reconnect(True, initial_delay=0.05)
    conn = connect(ctx, opts=opts)
    reconnected = threading.Event()
    conn.set_on_reconnect(lambda c, d: d.set(), reconnected)
    check(cut_sockets_to_listener() == 1, "expected one socket to the listener")
    check(reconnected.wait(10), "no reconnect")
    deadline = time.monotonic() + 10
    while not conn.is_ok() and time.monotonic() < deadline:
        time.sleep(0.01)
    check(conn.is_ok(), "not connected after the reconnect")
    check(conn.ping(10), "no PINGRESP after the reconnect")
    conn.close()
    ctx.exit()


TESTS = [test_01, test_02, test_03, test_04, test_05, test_06, test_07, test_08, test_09, test_10, test_11]


def main(argv=None):
    global HOST, PORT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", default=PORT)
    args = parser.parse_args(argv)
    HOST, PORT = args.host, str(args.port)
    for n, test in enumerate(TESTS, start=1):
        try:
            test()
        except Failed as e:
            print(f"Test {n:02d}: {test.__doc__} FAILED: {e}", flush=True)
            return 1
        except Exception as e:  # noqa: BLE001 - report, exit non-zero
            print(f"Test {n:02d}: {test.__doc__} FAILED: {type(e).__name__}: {e}", flush=True)
            return 1
        print(f"Test {n:02d}: {test.__doc__} OK", flush=True)
    print("All tests passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
