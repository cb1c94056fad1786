"""The module's constants, exceptions, AsyncQueue and Ctx (PyMyQtt names)."""

import threading

import pytest

import myqtt


def test_constants_have_pymyqtt_values():
    assert (myqtt.qos0, myqtt.qos1, myqtt.qos2) == (0, 1, 2)
    assert (myqtt.PUBLISH_OK, myqtt.PUBLISH_DISCARD, myqtt.PUBLISH_CONN_CLOSE) == (1, 2, 3)
    assert myqtt.CONNACK_DEFERRED == -1
    assert myqtt.CONNACK_ACCEPTED == 0
    # MQTT 3.1.1 §3.2.2.3 return codes.
    assert [
        myqtt.CONNACK_REFUSED,
        myqtt.CONNACK_IDENTIFIER_REJECTED,
        myqtt.CONNACK_SERVER_UNAVAILABLE,
        myqtt.CONNACK_BAD_USERNAME_OR_PASSWORD,
        myqtt.CONNACK_NOT_AUTHORIZED,
    ] == [1, 2, 3, 4, 5]
    assert (myqtt.CONNECT, myqtt.PUBLISH, myqtt.DISCONNECT, myqtt.AUTH) == (1, 3, 14, 15)


def test_exceptions_share_one_base_class():
    for exc in (
        myqtt.ConnectionRefusedError,
        myqtt.ConnectionLostError,
        myqtt.TimeoutError,
        myqtt.ProtocolError,
    ):
        assert issubclass(exc, myqtt.MyqttError)
    assert issubclass(myqtt.MyqttError, Exception)


def test_submodules_import():
    import myqtt.sasl
    import myqtt.tls

    assert myqtt.tls.__name__ == "myqtt.tls"
    assert myqtt.sasl.__name__ == "myqtt.sasl"


def test_async_queue_is_fifo():
    q = myqtt.AsyncQueue()
    for i in range(5):
        q.push(i)
    assert q.items == 5
    assert [q.pop() for _ in range(5)] == [0, 1, 2, 3, 4]
    assert len(q) == 0


def test_async_queue_timedpop_returns_none_on_timeout():
    q = myqtt.AsyncQueue()
    assert q.timedpop(20_000) is None


def test_async_queue_pop_wakes_on_push_from_another_thread():
    q = myqtt.AsyncQueue()
    got = []
    t = threading.Thread(target=lambda: got.append(q.pop()))
    t.start()
    q.push("hello")
    t.join(timeout=10)
    assert not t.is_alive()
    assert got == ["hello"]


def test_ctx_init_and_exit():
    ctx = myqtt.Ctx()
    assert not ctx.is_initialized
    assert ctx.init() is True
    assert ctx.is_initialized
    assert ctx.init() is True, "a second init is harmless"
    ctx.exit()
    assert not ctx.is_initialized
    ctx.exit()


@pytest.mark.parametrize("n", [0, 1])
def test_ctx_can_be_dropped_without_exit(n):
    ctx = myqtt.Ctx()
    if n:
        ctx.init()
    del ctx


FREE_THREADED = r'''
import importlib.machinery as m
import sys
import sysconfig

# What a free-threaded CPython build (3.13t, 3.14t) is like to the package:
# Py_GIL_DISABLED is set, and its extension suffixes have no ".abi3.so".
real = sysconfig.get_config_var
sysconfig.get_config_var = lambda name: 1 if name == "Py_GIL_DISABLED" else real(name)
ext = [s for s in m.EXTENSION_SUFFIXES if s != ".abi3.so"]
loaders = [
    (m.ExtensionFileLoader, ext),
    (m.SourceFileLoader, m.SOURCE_SUFFIXES),
    (m.SourcelessFileLoader, m.BYTECODE_SUFFIXES),
]
sys.path_hooks = [h for h in sys.path_hooks if "FileFinder" not in repr(h)]
sys.path_hooks.append(m.FileFinder.path_hook(*loaders))
sys.path_importer_cache.clear()
try:
    import myqtt
except ImportError as e:
    print(e)
    sys.exit(3)
print("imported")
'''


def test_free_threaded_cpython_is_refused_with_a_clear_message():
    """The abi3 module cannot load on a free-threaded build: the import
    says so, instead of a bare "No module named 'myqtt._myqtt'"."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", FREE_THREADED], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "free-threaded CPython" in r.stdout
    assert "abi3" in r.stdout
