#!/usr/bin/env python3
"""The regression listener: a PyMyQtt-style MQTT server written in Python.

It serves the admin topics the regression client asks (each answer is
published to the asking connection only, on the same topic, and the
request itself is discarded):

- ``myqtt/admin/get-conn-user``: the user name the connection logged in with
- ``myqtt/admin/get-client-identifier``: the connection's client identifier
- ``myqtt/admin/get-server-name``: the listener address the client reached

and refuses bad credentials in ``on_connect`` (user "aspl" must use the
password "test").

Usage: myqtt-regression-listener.py [--host H] [--port P] [--storage DIR]
With ``--port 0`` the system picks the port; the listener prints
``listening on HOST:PORT`` once it accepts connections.
"""

import argparse
import logging
import sys

import myqtt

ADMIN = "myqtt/admin/"


def on_connect(ctx, conn, data):
    if conn.username == "aspl" and conn.password != "test":
        return myqtt.CONNACK_BAD_USERNAME_OR_PASSWORD
    return myqtt.CONNACK_ACCEPTED


def on_publish(ctx, conn, msg, data):
    if not msg.topic.startswith(ADMIN):
        return myqtt.PUBLISH_OK
    request = msg.topic[len(ADMIN) :]
    if request == "get-conn-user":
        answer = conn.username or ""
    elif request == "get-client-identifier":
        answer = conn.client_id
    elif request == "get-server-name":
        answer = conn.local.rsplit(":", 1)[0]
    else:
        return myqtt.PUBLISH_DISCARD
    conn.pub(msg.topic, answer, msg.qos, False)
    return myqtt.PUBLISH_DISCARD


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default="1883", help="0 picks a free port")
    parser.add_argument("--storage", default=None, help="durable storage directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    ctx = myqtt.Ctx()
    if not ctx.init():
        print("ERROR: unable to init ctx", file=sys.stderr)
        return 1
    if args.storage:
        ctx.storage_set_path(args.storage, 4096)
    ctx.set_on_connect(on_connect)
    ctx.set_on_publish(on_publish)

    try:
        listener = myqtt.create_listener(ctx, args.host, args.port)
    except myqtt.MyqttError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        ctx.exit()
        return 1
    if not listener.is_ok():
        print(f"ERROR: failed to start listener: {listener.error_msg}", file=sys.stderr)
        ctx.exit()
        return 1
    print(f"listening on {listener.host}:{listener.port}", flush=True)

    myqtt.wait_listeners(ctx, unlock_on_signal=True)
    ctx.exit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
