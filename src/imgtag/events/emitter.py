"""Sends events to the run's `on_event` handler, and keeps a failing handler from stopping the run.

A handler that raises (a closed pipe, a full disk, a bug in a notebook's callback) is told nothing more, and the
run says so once on stderr: the events are a view of the work, and the work (paid answers, the store, the exports)
goes on. Events carry paths, counts, costs and error types, never a key or a request's text.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping

VERSION = 1

EventHandler = Callable[[Mapping[str, object]], None]


class Events:
    """The run's one way to emit an event. `run_started` goes first whatever the order of the calls: an event
    sent before `started()` sends a `run_started` without totals ahead of it."""

    def __init__(self, handler: EventHandler | None, *, warn: Callable[[str], None] | None = None) -> None:
        self.handler = handler
        self._warn = warn or _to_stderr
        self._start: dict[str, object] | None = None  # run_started, held until its totals are known
        self._started = False
        self.stopped_by: str | None = None  # why the handler was dropped (said once)

    @property
    def enabled(self) -> bool:
        return self.handler is not None

    def prepare(self, **fields: object) -> None:
        """Hold run_started (target, mode); `started(total=...)` or the next event sends it."""
        self._start = dict(fields)

    def started(self, **totals: object) -> None:
        if self._started or self._start is None:
            return
        self._started = True
        self._send("run_started", {**self._start, **totals})

    def emit(self, kind: str, **fields: object) -> None:
        if self.handler is None:
            return
        if not self._started and self._start is not None and kind != "run_started":
            self.started(total_files=None)
        self._send(kind, fields)

    def _send(self, kind: str, fields: Mapping[str, object]) -> None:
        handler = self.handler
        if handler is None:
            return
        try:
            handler({"v": VERSION, "type": kind, **fields})
        except Exception as exc:
            self.handler = None
            self.stopped_by = _reason(exc)
            self._warn(f"imgtag: events stopped ({self.stopped_by}); the run goes on and its results are in the "
                       "store")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, BrokenPipeError):
        return "the reader closed the pipe"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _to_stderr(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
