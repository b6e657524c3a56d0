"""Ctrl-C and SIGTERM: the run stops cleanly, says so in one sentence, and is marked interrupted in the store.

SIGTERM is handed to whatever handles SIGINT at that moment (asyncio.run's handler cancels the main task, so
every `finally` runs: the decode pool is shut down, the progress line erased). Decode workers ignore SIGINT
(see ingest/lifeline.py), so a Ctrl-C at the terminal, which reaches the whole process group, prints nothing
from them.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
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

    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread (e.g. an embedding application): leave signals alone
        yield state
        return
    try:
        yield state
    finally:
        signal.signal(signal.SIGTERM, previous)
