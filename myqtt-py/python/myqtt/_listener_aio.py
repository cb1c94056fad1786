"""Coroutine listener handlers: finishing one that suspended.

The dispatch thread starts a coroutine handler itself (`coro.send(None)`,
with its asyncio loop set as the running loop): one that completes without
suspending costs no event-loop round. One that suspends is finished by
`resume` under `loop.run_until_complete`, which re-yields what the
coroutine yields to the asyncio task and passes back what the task sends or
throws, as `await` would have.
"""

from __future__ import annotations

from typing import Any, Coroutine, Generator


class _Yield:
    """Awaiting it yields `value` once to the running task."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield self.value)


async def resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    """Runs `coro`, suspended after yielding `yielded`, to its end."""
    while True:
        try:
            sent = await _Yield(yielded)
        except BaseException as exc:  # forwarded into the coroutine, as await does
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value
