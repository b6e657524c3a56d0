"""Progress for long runs: a live line on a terminal, plain periodic lines otherwise, nothing decorative
under NO_COLOR. Reads counters; never drives the work.

The live line always fits the terminal (it never wraps, so `\\r` can rewrite it): segments are dropped from
the least useful up until it fits. The total is known from the start (files are counted by a fast walk in
a thread while work begins), so the ETA is real from the first seconds. After a resume the line separates
what this run did from what earlier runs had already done, and the rate and ETA count only this run's
work. In batch mode the wait is on the server: the line says how many images were submitted, how many the
server is still processing and how many were collected, and shows no ETA it cannot know.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from imgtag.events.payloads import dollars
from imgtag.util.words import plural

SEPARATOR = " | "


@dataclass
class BatchView:
    submitted: int        # images in batches this run created
    processing: int       # images the server has not answered yet (live batches, any run)
    collected: int        # answers stored by this run
    batches: int          # live batches


@dataclass
class Snapshot:
    discovered: int
    finished: int          # files settled this run (ok, failed, skipped, already done)
    ok: int                # answered ok by this run
    failed: int
    skipped: int
    in_flight: int
    spent_usd: float | None  # this run (None: prices unknown)
    pace: str
    discovery_done: bool
    extra: str = ""
    counted: int | None = None            # files found by the up-front walk (None: not known yet)
    done_before: int = 0                  # files whose answer an earlier run had already stored
    spent_to_date_usd: float | None = None  # this target, earlier runs included
    batch: BatchView | None = None        # batch mode
    credits_used: float | None = None     # a provider billed in credits: shown instead of dollars (None: USD)
    stopping: bool = False                # a graceful stop waits for the answers in flight: no ETA to show

    @property
    def total(self) -> int | None:
        if self.discovery_done:
            return self.discovered
        if self.counted is not None:
            return max(self.counted, self.discovered)
        return None


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def money(amount: float | None) -> str:
    """The one money format (util/money.py): $0.0007, $0.0863, $1.23, $1,234.50; "unknown" without prices."""
    from imgtag.util.money import usd

    return usd(amount)


def _credits(amount: float) -> str:
    return f"{amount:,.6g} credit" + ("" if amount == 1 else "s")


def fit(segments: list[tuple[int, str]], width: int) -> str:
    """Join segments (priority, text) in their order, dropping the lowest priorities until the line fits."""
    kept = [(p, text) for p, text in segments if text]
    while len(kept) > 1 and len(SEPARATOR.join(t for _, t in kept)) > width:
        lowest = min(range(len(kept)), key=lambda i: (kept[i][0], -i))
        kept.pop(lowest)
    line = SEPARATOR.join(t for _, t in kept)
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"


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

    def segments(self, snap: Snapshot) -> list[tuple[int, str]]:
        """(priority, text): the higher the priority, the later it is dropped on a narrow terminal."""
        elapsed = max(1e-6, time.monotonic() - self._start)
        total = snap.total
        new_finished = max(0, snap.finished - snap.done_before)
        rate = new_finished / elapsed
        remaining = total - snap.finished if total is not None else None
        count = (f"{snap.finished:,}/{total:,} files" if total is not None
                 else f"{snap.finished:,}/{snap.discovered:,}+ files")
        cost = money(snap.spent_usd) if snap.spent_usd is not None else "cost unknown"
        if snap.credits_used is not None:
            # Billed in credits: $0 would not be the bill (the summary and `imgtag status` show the balance).
            cost, cost_to_date = _credits(snap.credits_used), ""
        elif snap.spent_usd is None:
            cost_to_date = ""
        elif snap.spent_to_date_usd is not None and snap.spent_to_date_usd - snap.spent_usd > 1e-12:
            cost_to_date = f"{money(snap.spent_to_date_usd)} to date"
            cost = f"{cost} this run"
        else:
            cost_to_date = ""
        segs: list[tuple[int, str]] = [(100, count), (70, f"ok {snap.ok:,}"), (60, f"failed {snap.failed:,}"),
                                       (30, f"skipped {snap.skipped:,}" if snap.skipped else ""),
                                       (40, f"done before {snap.done_before:,}" if snap.done_before else "")]
        if snap.batch is not None:
            b = snap.batch
            segs += [(90, f"submitted {b.submitted:,}"),
                     (85, f"on the server {b.processing:,}" + (f" ({b.batches} batches)" if b.batches > 1 else "")),
                     (80, f"collected {b.collected:,}")]
        else:
            eta = remaining / rate if remaining is not None and rate > 0 else None
            segs += [(50, f"in flight {snap.in_flight}"), (20, f"{rate:.1f}/s"),
                     (90, "stopping" if snap.stopping else f"ETA {_fmt_eta(eta)}")]
        segs += [(75, cost), (35, cost_to_date), (10, snap.pace), (15, snap.extra)]
        return segs

    def line(self, snap: Snapshot, width: int | None = None) -> str:
        segs = self.segments(snap)
        if width is None:
            return SEPARATOR.join(text for _, text in segs if text)
        return fit(segs, width)

    def _columns(self) -> int:
        """The width of the terminal the line is written to (stderr), read at every tick so a resize applies.
        One column short of the edge: writing into the last column wraps on some terminals."""
        columns = 0
        if not os.environ.get("COLUMNS"):
            try:
                columns = os.get_terminal_size(self.stream.fileno()).columns
            except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
                columns = 0
        if columns <= 0:
            columns = shutil.get_terminal_size(fallback=(80, 24)).columns
        return max(20, columns - 1)

    def tick(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        if not self.live:
            snap = self.read()
            if snap.total is None and not force and now - self._start < self.interval:
                # A log line gives the real total, which the up-front walk has in moments: not "0/0+ files"
                # at the start (a walk slower than one interval, e.g. paths on stdin, shows what it found).
                return
            self._last = now
            self.stream.write(f"imgtag: {self.line(snap)}\n")
            self.stream.flush()
            return
        self._last = now
        text = self.line(self.read(), self._columns())
        # One rewritten line; \r + pad is enough and works under NO_COLOR too.
        padded = text.ljust(self._width)
        self._width = len(text)
        prefix = "" if self.plain else "\x1b[2K"
        self.stream.write(f"\r{prefix}{padded}")
        self.stream.flush()

    def erase(self) -> None:
        """Clear the live line, for a line printed in its place; the next tick draws it again below."""
        if self.enabled and self.live and self._width:
            # The whole line: the terminal echoed "^C" after ours, and a "C" left there would end the sentence.
            self.stream.write("\r" + " " * (self._width + 2) + "\r" if self.plain else "\r\x1b[2K")
            self.stream.flush()
            self._width = 0

    def close(self, *, erase: bool = False) -> None:
        if not self.enabled:
            return
        if erase:  # interrupted: leave the terminal to the one sentence that follows
            self.erase()
            return
        self.tick(force=True)
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


def resume_note(files: int, done_before: int, spent_run: float | None, spent_to_date: float | None) -> str | None:
    """The end-of-run line that matches the live line: what was new, what earlier runs did, and the cost (left out
    when some of it is unknown: the summary line says "cost unknown")."""
    earlier = spent_run is not None and spent_to_date is not None and spent_to_date - spent_run > 1e-12
    if not done_before and not earlier:
        return None
    parts = []
    if done_before:
        # Not "N new this run": files skipped again (too small, unreadable) were neither new nor done before.
        parts.append(f"{done_before:,} of {plural(files, 'file')} already done by earlier runs")
    if spent_run is not None and spent_to_date is not None:
        parts.append(f"{money(spent_run)} this run, {money(spent_to_date)} to date for this preset and model")
    return "; ".join(parts)


async def tick_forever(progress: Progress) -> None:
    """Redraw the line every 0.2 s until cancelled (the runs start it as a task beside their work)."""
    import asyncio

    while True:
        progress.tick()
        await asyncio.sleep(0.2)


def progress_fields(snap: Snapshot, elapsed_s: float) -> dict[str, object]:
    """The `progress` event's fields (events/schema.json)."""
    batch = snap.batch
    return {"finished": snap.finished, "total_files": snap.total, "ok": snap.ok, "failed": snap.failed,
            "skipped": snap.skipped, "done_before": snap.done_before, "in_flight": snap.in_flight,
            "cost_usd": dollars(snap.spent_usd), "elapsed_s": round(elapsed_s, 3),
            "batch": None if batch is None else {"submitted": batch.submitted, "processing": batch.processing,
                                                 "collected": batch.collected, "batches": batch.batches}}
