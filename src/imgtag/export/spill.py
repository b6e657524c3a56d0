"""A set of keys with a value each, kept in a private temporary SQLite database on disk: what an exporter must
remember per image (a caption path already claimed, a thumbnail still to make) without memory growing with the
folder. SQLite keeps a small page cache and spills the rest to its temporary file, deleted at close."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator


class SpillSet:
    def __init__(self) -> None:
        # "": a private temporary database, on disk once it outgrows SQLite's page cache (a few MB).
        self.db = sqlite3.connect("")
        self.db.execute("CREATE TABLE kept (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
        self.count = 0

    def add(self, key: str, value: str = "") -> bool:
        """Keep `key` with `value`; False (and nothing changed) when it is kept already."""
        added = self.db.execute("INSERT OR IGNORE INTO kept(key, value) VALUES (?, ?)", (key, value)).rowcount == 1
        self.count += added
        return added

    def get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM kept WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def __contains__(self, key: object) -> bool:
        return self.db.execute("SELECT 1 FROM kept WHERE key = ?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        return self.count

    def items(self) -> Iterator[tuple[str, str]]:
        """(key, value) pairs, streamed."""
        yield from self.db.execute("SELECT key, value FROM kept")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> SpillSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
