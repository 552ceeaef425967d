"""Graceful interruption: Ctrl-C (SIGINT) and SIGTERM become a flag that long loops check.

The engine runs its steps in chunks of compiled work. A signal arriving while a chunk runs
is delivered to Python only when the chunk returns; raising ``KeyboardInterrupt`` then would
throw that finished chunk away. Under :func:`interrupt_flag` the first signal only sets a
flag: the loop finishes the chunk in flight, keeps it and stops at the next check. A second
Ctrl-C interrupts at once (the previous handler is back in place after the first).

Flags nest: a sweep's loop over cells and the engine's loop over chunks inside it each hold
one, and a signal sets every active flag, so both stop.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["interrupt_flag"]

_ACTIVE: list[threading.Event] = []  # the flags of the enclosing blocks (main thread only)
_PREVIOUS: dict[int, object] = {}  # the handlers the outermost block replaced


def _handler(signum, frame) -> None:
    for flag in _ACTIVE:
        flag.set()
    signal.signal(signal.SIGINT, _PREVIOUS[signal.SIGINT])  # a second Ctrl-C: at once


@contextmanager
def interrupt_flag() -> Iterator[threading.Event]:
    """An event set by the first SIGINT or SIGTERM while the block runs.

    Only the main thread can install signal handlers; elsewhere (a Dask worker thread, say)
    the event is never set by a signal and ``KeyboardInterrupt`` keeps its usual meaning.
    """
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    outermost = not _ACTIVE
    if outermost:
        for s in (signal.SIGINT, signal.SIGTERM):
            h = signal.getsignal(s)
            _PREVIOUS[s] = signal.SIG_DFL if h is None else h
            signal.signal(s, _handler)
    elif any(f.is_set() for f in _ACTIVE):
        flag.set()  # already interrupted: an inner loop must not start over
    _ACTIVE.append(flag)
    try:
        yield flag
    finally:
        _ACTIVE.remove(flag)
        if outermost:
            for s, h in _PREVIOUS.items():
                signal.signal(s, h)
            _PREVIOUS.clear()
