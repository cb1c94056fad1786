"""Forwards the Rust engine's log records to Python ``logging``.

The native module formats records on the engine's threads and queues them
in a bounded channel, without the GIL; this module's thread takes them and
hands them to the ``myqtt`` logger and its children (``myqtt.client.driver``
for the engine's ``myqtt_core::client::driver``...). Rust levels map to
``ERROR``, ``WARNING``, ``INFO``, ``DEBUG`` and ``TRACE`` (5).

Only records at or above the effective level of the ``myqtt`` logger are
formatted at all. The thread re-reads that level every 0.2 s; call
:func:`refresh_log_level` to apply a change at once.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from myqtt import _myqtt

__all__ = ["TRACE", "level_critical", "level_debug", "level_warning", "refresh_log_level"]

#: The level of the engine's ``trace`` records.
TRACE = 5
if logging.getLevelName(TRACE) == f"Level {TRACE}":
    logging.addLevelName(TRACE, "TRACE")

_LOGGER = logging.getLogger("myqtt")
_POLL_MS = 200
_stop = threading.Event()
_thread: Optional[threading.Thread] = None
_start_lock = threading.Lock()

_Record = Tuple[int, str, str, Optional[str], Optional[int]]

#: PyMyQtt's log levels, as ``ctx.set_log_handler`` handlers receive them.
level_debug = 0
level_warning = 1
level_critical = 2

# ctx.set_log_handler: id(ctx) -> (ctx, handler, data).
_ctx_handlers: Dict[int, Tuple[Any, Callable[..., object], Any]] = {}


def refresh_log_level() -> None:
    """Applies the current effective level of the ``myqtt`` logger to the
    engine now (otherwise it is picked up within 0.2 s)."""
    level = _LOGGER.getEffectiveLevel()
    if _ctx_handlers:
        level = min(level, logging.DEBUG)
    _myqtt._log_set_level(level)


def _set_ctx_handler(ctx: Any, handler: Optional[Callable[..., object]], data: Any) -> None:
    if handler is None:
        _ctx_handlers.pop(id(ctx), None)
    else:
        if not callable(handler):
            raise TypeError("the log handler must be callable")
        _ctx_handlers[id(ctx)] = (ctx, handler, data)
    refresh_log_level()


def _pymyqtt_level(level: int) -> int:
    if level >= logging.ERROR:
        return level_critical
    if level >= logging.WARNING:
        return level_warning
    return level_debug


def _emit(records: List[_Record]) -> None:
    handlers = list(_ctx_handlers.values())
    for level, name, message, file, line in records:
        logger = logging.getLogger(name)
        if logger.isEnabledFor(level):
            logger.handle(
                logger.makeRecord(name, level, file or "<rust>", line or 0, message, (), None)
            )
        if level < logging.DEBUG:
            continue
        for ctx, handler, data in handlers:
            try:
                handler(ctx, file or "<rust>", line or 0, _pymyqtt_level(level), message, data)
            except Exception:  # noqa: BLE001 - a failing handler is logged, never fatal
                _LOGGER.exception("the ctx log handler raised")


def _run() -> None:
    dropped = 0
    while not _stop.is_set():
        try:
            records = _myqtt._log_drain(_POLL_MS)
            refresh_log_level()
            _emit(records)
            now_dropped = _myqtt._log_dropped()
            if now_dropped != dropped:
                _LOGGER.warning(
                    "%d engine log records were dropped: Python logging did not keep up",
                    now_dropped - dropped,
                )
                dropped = now_dropped
        except Exception:  # noqa: BLE001 - the thread must survive a failing handler
            _LOGGER.exception("forwarding the engine's log records failed")


def start() -> None:
    """Starts the forwarding thread (once; ``import myqtt`` does it)."""
    global _thread
    with _start_lock:
        if _thread is not None:
            return
        refresh_log_level()
        _thread = threading.Thread(target=_run, name="myqtt-log", daemon=True)
        _thread.start()


def _at_exit() -> None:
    # From here on no engine thread attaches to the interpreter, which is
    # about to finalize.
    _stop.set()
    _myqtt._interpreter_exiting()
    if _thread is not None:
        _thread.join(timeout=2 * _POLL_MS / 1000)


atexit.register(_at_exit)
