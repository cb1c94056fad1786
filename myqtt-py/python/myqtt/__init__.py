"""myqtt: an MQTT 3.1 / 3.1.1 / 5.0 client and listener on a Rust engine.

The API follows the PyMyQtt manual (``myqtt.Ctx``, ``myqtt.Conn``,
``myqtt.create_listener``...), with a Pythonic layer on top
(``myqtt.connect``, exceptions instead of status values) and an asyncio one
(``myqtt.aio``). Rust log records reach Python ``logging`` under the logger
``myqtt``.
"""


def _check_interpreter() -> None:
    """Free-threaded CPython (3.13t, 3.14t) cannot load the native module:
    it is built against the stable ABI (``abi3``), which those builds do not
    offer (their extension suffixes have no ``.abi3.so``), so the import
    would fail with a bare "No module named 'myqtt._myqtt'". Say why."""
    import sysconfig

    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        return
    try:
        import myqtt._myqtt  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "myqtt does not support free-threaded CPython (this interpreter is a "
            "'t' build, without the GIL): its native module is built for the stable "
            "ABI (abi3), which free-threaded builds cannot load. Use a regular "
            "CPython 3.9+ build."
        ) from e


_check_interpreter()

from myqtt._myqtt import (  # noqa: E402
    AUTH,
    CONNACK,
    CONNACK_ACCEPTED,
    CONNACK_BAD_USERNAME_OR_PASSWORD,
    CONNACK_CONNECT_TIMEOUT,
    CONNACK_DEFERRED,
    CONNACK_IDENTIFIER_REJECTED,
    CONNACK_NOT_AUTHORIZED,
    CONNACK_REFUSED,
    CONNACK_SERVER_UNAVAILABLE,
    CONNACK_UNABLE_TO_CONNECT,
    CONNECT,
    DISCONNECT,
    MQTT_3_1,
    MQTT_3_1_1,
    MQTT_5,
    PINGREQ,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBLISH_CONN_CLOSE,
    PUBLISH_DISCARD,
    PUBLISH_OK,
    PUBREC,
    PUBREL,
    SUBACK,
    SUBSCRIBE,
    UNSUBACK,
    UNSUBSCRIBE,
    AsyncQueue,
    Conn,
    ConnectError,
    ConnectionLostError,
    ConnectionRefusedError,
    ConnOpts,
    Ctx,
    Handle,
    Msg,
    MyqttError,
    Properties,
    ProtocolError,
    PublishHandle,
    RefusedError,
    TimeoutError,
    __version__,
    qos0,
    qos1,
    qos2,
)
from myqtt import _logging
from myqtt._logging import TRACE, level_critical, level_debug, level_warning, refresh_log_level
from myqtt.client import Client, SubscribeResult, Will, connect, default_ctx
from myqtt import aio

_logging.start()

__all__ = [
    "AUTH",
    "CONNACK",
    "CONNACK_ACCEPTED",
    "CONNACK_BAD_USERNAME_OR_PASSWORD",
    "CONNACK_CONNECT_TIMEOUT",
    "CONNACK_DEFERRED",
    "CONNACK_IDENTIFIER_REJECTED",
    "CONNACK_NOT_AUTHORIZED",
    "CONNACK_REFUSED",
    "CONNACK_SERVER_UNAVAILABLE",
    "CONNACK_UNABLE_TO_CONNECT",
    "CONNECT",
    "DISCONNECT",
    "MQTT_3_1",
    "MQTT_3_1_1",
    "MQTT_5",
    "PINGREQ",
    "PINGRESP",
    "PUBACK",
    "PUBCOMP",
    "PUBLISH",
    "PUBLISH_CONN_CLOSE",
    "PUBLISH_DISCARD",
    "PUBLISH_OK",
    "PUBREC",
    "PUBREL",
    "SUBACK",
    "SUBSCRIBE",
    "UNSUBACK",
    "UNSUBSCRIBE",
    "AsyncQueue",
    "Client",
    "Conn",
    "ConnOpts",
    "ConnectError",
    "ConnectionLostError",
    "ConnectionRefusedError",
    "Ctx",
    "Handle",
    "Msg",
    "MyqttError",
    "Properties",
    "ProtocolError",
    "PublishHandle",
    "RefusedError",
    "SubscribeResult",
    "TRACE",
    "TimeoutError",
    "Will",
    "aio",
    "connect",
    "default_ctx",
    "level_critical",
    "level_debug",
    "level_warning",
    "refresh_log_level",
    "__version__",
    "qos0",
    "qos1",
    "qos2",
]

# ----- listener side ---------------------------------------------------------
from myqtt._myqtt import (
    ACL_DELIVER,
    ACL_PUBLISH,
    ACL_SUBSCRIBE,
    Listener,
    ListenerConn,
    ListenerEvent,
    ListenerMsg,
    create_listener,
    topic_matches_sub,
    unlock_listeners,
    wait_listeners,
)

__all__ += [
    "ACL_DELIVER",
    "ACL_PUBLISH",
    "ACL_SUBSCRIBE",
    "Listener",
    "ListenerConn",
    "ListenerEvent",
    "ListenerMsg",
    "create_listener",
    "topic_matches_sub",
    "unlock_listeners",
    "wait_listeners",
]
