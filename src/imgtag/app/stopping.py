"""A graceful stop of a sync run: the first Ctrl-C (or SIGTERM, or `RunSession.stop` from Python) sends nothing
new and waits, for a bounded time, for the answers already asked for, since they are paid for either way.

Why these bounds: an answer usually takes seconds, and a person who pressed Ctrl-C waits 30 s at most (a second
Ctrl-C stops at once). A service manager sends SIGTERM and kills soon after (docker stop: 10 s; systemd's
default is 90 s), and imgtag still has to close its store and stop its helpers after the wait: 5 s.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imgtag.request.engine import StopReport

GRACE_S = 30.0          # a Ctrl-C, or a stop asked from Python
GRACE_SIGTERM_S = 5.0   # SIGTERM: a service manager's SIGKILL follows


class RunStopped(Exception):
    """The run ended after a graceful stop, as an interrupted one (the answers that came meanwhile are stored)."""

    def __init__(self, report: StopReport) -> None:
        super().__init__("stopped")
        self.report = report


@contextlib.contextmanager
def interrupt_raises_here(replace: Callable[[Any], bool]) -> Iterator[None]:
    """While the block runs, Ctrl-C raises KeyboardInterrupt in the main thread at once (Python's default handler)
    instead of calling the SIGINT handler in place, when `replace(that handler)` says so: for code that blocks
    the thread a handler would act through (an event loop waiting in a call). The handler is put back after.
    Off the main thread nothing changes: signals are the main thread's."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.getsignal(signal.SIGINT)
    if not replace(handler):
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)


@contextlib.contextmanager
def graceful_first_interrupt(stop: Callable[[], bool]) -> Iterator[None]:
    """Inside the coroutine asyncio.run runs in the main thread (the CLI, a script calling the Python API): the
    first Ctrl-C calls `stop()` on the event loop; when it returns False (nothing to wait for), and at any later
    signal, asyncio's own handler runs: the main task is cancelled and asyncio.run raises KeyboardInterrupt,
    exactly as without this. Elsewhere (not the main thread, Ctrl-C ignored) it does nothing."""
    asyncio_handler = signal.getsignal(signal.SIGINT)
    if (threading.current_thread() is not threading.main_thread() or not callable(asyncio_handler)
            or asyncio_handler is signal.default_int_handler):
        # Not the main thread (the API's thread beside a caller's loop: its caller answers Ctrl-C), Ctrl-C ignored
        # (nohup), or no loop handler to hand over to: left as it is
        yield
        return
    import asyncio

    loop = asyncio.get_running_loop()
    signals = 0

    def first() -> None:
        try:
            waiting = stop()
        except Exception:  # never a traceback from a callback: stop as before
            waiting = False
        if not waiting:
            asyncio_handler(signal.SIGINT, None)

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            loop.call_soon_threadsafe(first)  # on the loop: the handler may run in the middle of anything
        else:
            asyncio_handler(signum, frame)

    try:
        signal.signal(signal.SIGINT, on_sigint)
        installed = True
    except ValueError:  # signals unusable here (an embedding interpreter)
        installed = False
    try:  # outside the except clause: the run's own errors must not show that ValueError as their context
        yield
    finally:
        if installed and signal.getsignal(signal.SIGINT) is on_sigint:
            signal.signal(signal.SIGINT, asyncio_handler)
