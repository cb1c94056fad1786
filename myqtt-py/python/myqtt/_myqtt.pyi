"""Type stubs of the native module myqtt._myqtt (checked by mypy.stubtest)."""

from typing import Any, Final, Optional, final

__version__: Final[str]

qos0: Final[int]
qos1: Final[int]
qos2: Final[int]
PUBLISH_OK: Final[int]
PUBLISH_DISCARD: Final[int]
PUBLISH_CONN_CLOSE: Final[int]
CONNACK_CONNECT_TIMEOUT: Final[int]
CONNACK_UNABLE_TO_CONNECT: Final[int]
CONNACK_DEFERRED: Final[int]
CONNACK_ACCEPTED: Final[int]
CONNACK_REFUSED: Final[int]
CONNACK_IDENTIFIER_REJECTED: Final[int]
CONNACK_SERVER_UNAVAILABLE: Final[int]
CONNACK_BAD_USERNAME_OR_PASSWORD: Final[int]
CONNACK_NOT_AUTHORIZED: Final[int]
CONNECT: Final[int]
CONNACK: Final[int]
PUBLISH: Final[int]
PUBACK: Final[int]
PUBREC: Final[int]
PUBREL: Final[int]
PUBCOMP: Final[int]
SUBSCRIBE: Final[int]
SUBACK: Final[int]
UNSUBSCRIBE: Final[int]
UNSUBACK: Final[int]
PINGREQ: Final[int]
PINGRESP: Final[int]
DISCONNECT: Final[int]
AUTH: Final[int]
MQTT_3_1: Final[int]
MQTT_3_1_1: Final[int]
MQTT_5: Final[int]

class MyqttError(Exception): ...
class ConnectionRefusedError(MyqttError): ...
class ConnectionLostError(MyqttError): ...
class TimeoutError(MyqttError): ...
class ProtocolError(MyqttError): ...

@final
class AsyncQueue:
    def __init__(self) -> None: ...
    def push(self, item: Any) -> None: ...
    def pop(self) -> Any: ...
    def timedpop(self, microseconds: int) -> Optional[Any]: ...
    @property
    def items(self) -> int: ...
    def __len__(self) -> int: ...

@final
class Ctx:
    def __init__(self) -> None: ...
    def init(self) -> bool: ...
    def exit(self) -> None: ...
    @property
    def is_initialized(self) -> bool: ...
