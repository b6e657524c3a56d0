"""Writing one small file beside an original (a caption, a JSON sidecar), without ever clobbering a user's.

The decision for each target file:
- absent: write it, and record its hash in the ledger;
- ours (its bytes hash to what the ledger recorded): rewrite it from the store (unchanged bytes are left
  alone, so a re-export does not touch mtimes);
- someone else's: follow the ``existing`` policy: ``skip`` (default, counted and reported), ``overwrite``,
  or ``append``/``prepend`` (ours joined to the user's text, which the ledger keeps, so re-exporting
  rebuilds the same bytes instead of appending again).
A failure (read-only folder, a directory in the way) is counted with its reason and never stops the export.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from imgtag.export.atomic import atomic_write_bytes
from imgtag.export.ledger import Ledger, LedgerEntry, sha256_bytes
from imgtag.util.words import plural

EXISTING_POLICIES = ("skip", "overwrite", "append", "prepend")

# Joins our text to the user's own (kept, how) -> bytes; only formats that can merge (txt) give one.
Merge = Callable[[str, str], bytes]


@dataclass
class Tally:
    """What happened to each target, for the one-line summary of a per-image format."""

    fmt: str
    counts: dict[str, int] = field(default_factory=dict)
    first_failure: str | None = None
    first_conflict: str | None = None  # which files a conflict was between, said once

    def add(self, outcome: str, reason: str | None = None) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if reason and outcome == "conflict":
            self.first_conflict = self.first_conflict or reason
        elif reason and self.first_failure is None:
            self.first_failure = reason

    def line(self, what: str, hint: str = "") -> str:
        order = ("written", "unchanged", "overwritten", "appended", "prepended", "skipped", "conflict", "empty",
                 "failed")
        parts = [f"{self.counts[k]} {k}" for k in order if self.counts.get(k)]
        text = f"{self.fmt}: {', '.join(parts) or 'nothing to write'} ({what})"
        if self.first_conflict:
            others = self.counts.get("conflict", 1) - 1
            text += f"; {self.first_conflict}" + (f" (and {plural(others, 'other')})" if others else "")
        if self.counts.get("skipped") and hint:
            text += f"; {hint}"
        if self.first_failure:
            text += f"; first failure: {self.first_failure}"
        return text


def place(target: str, ours: bytes, fmt: str, ledger: Ledger, *, existing: str = "skip",
          merge: Merge | None = None) -> tuple[str, str | None]:
    """Write ``ours`` to ``target`` under the rules above; returns (outcome word, failure reason)."""
    try:
        current = _read(target)
    except OSError as exc:
        return _failed(exc)
    entry = ledger.get(target)
    if current is None:
        return _write(target, ours, fmt, ledger, LedgerEntry(sha256_bytes(ours)), "written")
    if entry is not None and sha256_bytes(current) == entry.sha256:
        if entry.kept is not None and entry.how and merge is not None:
            data = merge(entry.kept, entry.how)
            new = LedgerEntry(sha256_bytes(data), entry.kept, entry.how)
        else:
            data, new = ours, LedgerEntry(sha256_bytes(ours))
        if data == current:
            return "unchanged", None
        return _write(target, data, fmt, ledger, new, "written")
    if existing == "overwrite":
        return _write(target, ours, fmt, ledger, LedgerEntry(sha256_bytes(ours)), "overwritten")
    if existing in ("append", "prepend") and merge is not None:
        kept = current.decode("utf-8", errors="replace")
        data = merge(kept, existing)
        return _write(target, data, fmt, ledger, LedgerEntry(sha256_bytes(data), kept, existing), existing + "ed")
    return "skipped", None


def _read(target: str) -> bytes | None:
    try:
        with open(target, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _write(target: str, data: bytes, fmt: str, ledger: Ledger, entry: LedgerEntry,
           outcome: str) -> tuple[str, str | None]:
    try:
        atomic_write_bytes(target, data)
    except OSError as exc:
        return _failed(exc)
    ledger.put(target, fmt, entry)
    return outcome, None


def _failed(exc: OSError) -> tuple[str, str | None]:
    name = os.path.basename(os.fsdecode(exc.filename)) if exc.filename else ""
    return "failed", f"{exc.strerror or exc.__class__.__name__}{': ' + name if name else ''}"
