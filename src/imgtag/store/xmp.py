"""What imgtag wrote into XMP, per sidecar or embedded file (table xmp_written, migration _v2_xmp).

Exporters never see the store: the writer hands them an XmpLedger, a narrow view with only these
reads and writes.
"""

from __future__ import annotations

import json
import os
import sqlite3

from imgtag.store.db import now_iso


class XmpLedger:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def owned(self, target: str, kind: str) -> dict[str, list[str]]:
        """The bag items imgtag added to ``target`` last time it wrote it successfully."""
        row = self.db.execute("SELECT owned FROM xmp_written WHERE target=? AND kind=?",
                              (os.fsencode(target), kind)).fetchone()
        return dict(json.loads(row[0])) if row else {}

    def record_ok(self, target: str, kind: str, source: str, owned: dict[str, list[str]]) -> None:
        self.db.execute(
            "INSERT INTO xmp_written(target, kind, source, owned, status, error, updated_at)"
            " VALUES (?,?,?,?, 'ok', NULL, ?) ON CONFLICT(target, kind) DO UPDATE SET source=excluded.source,"
            " owned=excluded.owned, status='ok', error=NULL, updated_at=excluded.updated_at",
            (os.fsencode(target), kind, os.fsencode(source), json.dumps(owned, ensure_ascii=False), now_iso()),
        )

    def record_failure(self, target: str, kind: str, source: str, error: str) -> None:
        # The items written by an earlier success are still in the file: keep them owned.
        self.db.execute(
            "INSERT INTO xmp_written(target, kind, source, owned, status, error, updated_at)"
            " VALUES (?,?,?, '{}', 'failed', ?, ?) ON CONFLICT(target, kind) DO UPDATE SET"
            " source=excluded.source, status='failed', error=excluded.error, updated_at=excluded.updated_at",
            (os.fsencode(target), kind, os.fsencode(source), error, now_iso()),
        )

    def failures(self, kind: str) -> list[tuple[str, str]]:
        """(target, error) of every file whose last write of this kind failed."""
        rows = self.db.execute("SELECT target, error FROM xmp_written WHERE kind=? AND status='failed'"
                               " ORDER BY target", (kind,))
        return [(os.fsdecode(t), e or "") for t, e in rows]

    def file_state(self, source: str) -> tuple[int | None, int | None] | None:
        """(size, mtime_ns) the store has for an image, as the ingest stage compares them."""
        row = self.db.execute("SELECT size, mtime_ns FROM files WHERE path=?", (os.fsencode(source),)).fetchone()
        return (row[0], row[1]) if row else None

    def update_file_state(self, source: str, size: int, mtime_ns: int) -> None:
        """After embedding: the file's bytes changed but not its pixels, so the next run must take it as
        the same image (same sha256, same job) instead of paying for it again."""
        self.db.execute("UPDATE files SET size=?, mtime_ns=? WHERE path=?", (size, mtime_ns, os.fsencode(source)))
