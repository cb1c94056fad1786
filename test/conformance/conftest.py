"""Fixtures of the raw-packet conformance tests: the listener's address and
fresh raw connections per test, all closed afterwards."""

import itertools

import pytest

from mqttpkt import V311, Client

_ids = itertools.count()


@pytest.fixture
def addr(myqtt_listener):
    return myqtt_listener.addr


@pytest.fixture
def uid(request):
    """A client id / topic prefix unique to this test (the listener is shared
    by the whole session)."""
    return f"{request.node.name[:40]}-{next(_ids)}"


@pytest.fixture
def client(myqtt_listener):
    """`client(version)` opens a raw connection to the listener."""
    opened = []

    def open_client(version=V311, timeout=3.0, addr=None):
        c = Client(addr or myqtt_listener.addr, version, timeout)
        opened.append(c)
        return c

    yield open_client
    for c in opened:
        c.close()
    assert myqtt_listener.alive(), "the listener process died"
