"""Progress for long runs: a live line on a terminal, plain periodic lines otherwise, nothing decorative
under NO_COLOR. Reads counters; never drives the work."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO


@dataclass
class Snapshot:
    discovered: int
    finished: int          # files settled this run (ok, failed, skipped, already done)
    ok: int
    failed: int
    skipped: int
    in_flight: int
    spent_usd: float
    pace: str
    discovery_done: bool
    extra: str = ""


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Call `tick()` often (cheap); it renders at most every `interval` seconds."""

    def __init__(self, read: Callable[[], Snapshot], *, stream: TextIO | None = None,
                 interval: float | None = None, enabled: bool = True) -> None:
        self.read = read
        self.stream = stream or sys.stderr
        self.live = enabled and self.stream.isatty() and os.environ.get("TERM") != "dumb"
        self.plain = os.environ.get("NO_COLOR") is not None
        self.interval = interval if interval is not None else (0.25 if self.live else 10.0)
        self.enabled = enabled
        self._start = time.monotonic()
        self._last = 0.0
        self._width = 0

    def line(self, snap: Snapshot) -> str:
        elapsed = max(1e-6, time.monotonic() - self._start)
        rate = snap.finished / elapsed
        remaining = snap.discovered - snap.finished if snap.discovery_done else None
        eta = remaining / rate if remaining is not None and rate > 0 else None
        total = str(snap.discovered) if snap.discovery_done else f"{snap.discovered}+"
        parts = [
            f"{snap.finished}/{total} files",
            f"ok {snap.ok}",
            f"failed {snap.failed}",
            f"skipped {snap.skipped}",
            f"in flight {snap.in_flight}",
            f"{rate:.1f}/s",
            f"ETA {_fmt_eta(eta)}",
            f"${snap.spent_usd:.4f}",
            snap.pace,
            snap.extra,
        ]
        return " | ".join(part for part in parts if part)

    def tick(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        text = self.line(self.read())
        if self.live:
            # One rewritten line; \r + pad is enough and works under NO_COLOR too.
            padded = text.ljust(self._width)
            self._width = len(text)
            prefix = "" if self.plain else "\x1b[2K"
            self.stream.write(f"\r{prefix}{padded}")
        else:
            self.stream.write(f"imgtag: {text}\n")
        self.stream.flush()

    def close(self, *, erase: bool = False) -> None:
        if not self.enabled:
            return
        if erase:  # interrupted: leave the terminal to the one sentence that follows
            if self.live and self._width:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()
            return
        self.tick(force=True)
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
