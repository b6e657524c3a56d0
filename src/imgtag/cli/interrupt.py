"""Ctrl-C and SIGTERM: the run stops cleanly, says so in one sentence, and is marked interrupted in the store.

SIGTERM is handed to whatever handles SIGINT at that moment (asyncio.run's handler cancels the main task, so
every `finally` runs: the decode pool is shut down, the progress line erased). Decode workers ignore SIGINT
(see ingest/lifeline.py), so a Ctrl-C at the terminal, which reaches the whole process group, prints nothing
from them.

In `run` and `retry` the first signal stops gracefully (`stop_gracefully_first`): answers already asked for are
paid for, so the run waits a bounded time for them (app/stopping.py); the second is asyncio's cancel, as before.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

EXIT_SIGINT = 130
EXIT_SIGTERM = 143


@dataclass
class Interruption:
    signal_name: str = "SIGINT"

    @property
    def exit_code(self) -> int:
        return EXIT_SIGTERM if self.signal_name == "SIGTERM" else EXIT_SIGINT


_LAST = Interruption()  # the latest signal any sigterm_as_interrupt() answered: SIGINT unless a SIGTERM came


def last_signal() -> Interruption:
    """Which signal the KeyboardInterrupt being handled came from, for a handler outside the `with` block."""
    return _LAST


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[Interruption]:
    state = Interruption()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        state.signal_name = _LAST.signal_name = "SIGTERM"
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        # An embedding application's thread: signals are the main thread's to handle. Asked, not tried and caught:
        # a ValueError caught here would become the context of every error raised inside the block.
        yield state
        return
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield state
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def stop_gracefully_first(stop: Callable[[str], bool]) -> Iterator[None]:
    """Inside the coroutine asyncio.run runs: the first Ctrl-C (or SIGTERM, handed on by sigterm_as_interrupt)
    calls `stop(signal name)` on the event loop; when it returns False (nothing to wait for), and at any later
    signal, asyncio's own handler runs (app/stopping.py: the Python API answers Ctrl-C so too)."""
    from imgtag.app.stopping import graceful_first_interrupt  # here: `--help` must not pay for asyncio

    with graceful_first_interrupt(lambda: stop(_LAST.signal_name)):
        yield
