"""What imgtag wrote outside --out, so a re-export rewrites its own files and never a user's.

Per-image formats (captions, JSON sidecars) and metadata.jsonl live beside the originals, where a user's
own file of the same name may already be. A file counts as ours when its bytes hash to what we recorded
writing there; anything else is the user's. Exporters see the ``Ledger`` protocol only: the writer
backs it with the store (``StoreLedger``), tests with a dict.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class LedgerEntry:
    sha256: str  # of the bytes we wrote
    kept: str | None = None  # the user's own text we merged with (txt append/prepend), else None
    how: str | None = None  # "append" | "prepend" when kept is set


class Ledger(Protocol):
    def get(self, path: str) -> LedgerEntry | None: ...

    def put(self, path: str, fmt: str, entry: LedgerEntry) -> None: ...


class DictLedger:
    """In memory: for tests, and for exports that need not remember (nothing written outside --out)."""

    def __init__(self) -> None:
        self.entries: dict[str, LedgerEntry] = {}

    def get(self, path: str) -> LedgerEntry | None:
        return self.entries.get(path)

    def put(self, path: str, fmt: str, entry: LedgerEntry) -> None:
        self.entries[path] = entry


class StoreLedger:
    """The ``export_files`` table of the store. Each put commits at once (autocommit connection), so a
    crash right after writing a file leaves at most that one file unrecorded."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def get(self, path: str) -> LedgerEntry | None:
        row = self.db.execute("SELECT sha256, kept, how FROM export_files WHERE path=?",
                              (os.fsencode(path),)).fetchone()
        return LedgerEntry(row[0], row[1], row[2]) if row else None

    def put(self, path: str, fmt: str, entry: LedgerEntry) -> None:
        self.db.execute(
            "INSERT INTO export_files(path, format, sha256, kept, how) VALUES (?,?,?,?,?) ON CONFLICT(path)"
            " DO UPDATE SET format=excluded.format, sha256=excluded.sha256, kept=excluded.kept, how=excluded.how",
            (os.fsencode(path), fmt, entry.sha256, entry.kept, entry.how),
        )


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
