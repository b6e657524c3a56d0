"""Byte-identical copies this run settles with the image it asked: counted in the progress line's ok and failed.

A copy shares its image's answer (one request, no cost) and is this run's work (README: "byte-identical copies of
an image answered now ... are this run's"), so the line's counts agree with the summary's. A copy met while its
image's answer is still out waits here until the store says how that answer settled.
"""

from __future__ import annotations

import sqlite3

_CHUNK = 500  # job ids per query (well under SQLite's limit on bound variables)


class CopyTally:
    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0
        self._waiting: dict[int, int] = {}  # job id -> copies waiting for its answer

    def add(self, status: str | None, job_id: int | None = None) -> None:
        """One copy of an image whose answer's status is `status` now; one still out waits for job `job_id`."""
        if status == "ok":
            self.ok += 1
        elif status == "failed":
            self.failed += 1
        elif job_id is not None:
            self._waiting[job_id] = self._waiting.get(job_id, 0) + 1

    def settle(self, db: sqlite3.Connection) -> None:
        """Move the copies whose image's answer has settled since into ok or failed."""
        ids = list(self._waiting)
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for job_id, status in db.execute(f"SELECT id, status FROM jobs WHERE id IN ({marks})"
                                              " AND status IN ('ok', 'failed')", chunk):
                n = self._waiting.pop(job_id)
                if status == "ok":
                    self.ok += n
                else:
                    self.failed += n
