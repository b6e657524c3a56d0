"""Removing files from the store (`imgtag prune`): the rows of files that no longer exist on disk, with
everything that points at them kept consistent, in one transaction.

What goes and what stays:
- the file rows, and the review rows of those images (their current state, their versions, a queued retry):
  a person's edits of an image that is gone go with it. The operations (review_ops) stay, so the history still
  says what each did; undoing one restores the images that are still there.
- jobs (one per content and target) stay: an answer was paid for, and a copy elsewhere, or the same image
  added again, gets it without a new ask. A job's `file_id` moves to another file with its content, or is NULL.
- copies of a removed original point to the earliest remaining readable file with their content (which becomes
  the original); near-duplicate links to a removed file are cleared.
- the folder's file set stays the latest run's: its up-front count drops by the removed files it held, so they
  are not reported as pending.
Nothing on disk is touched.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from imgtag.store.db import Store

CHUNK = 10_000


def remove_files(store: Store, file_ids: Sequence[int]) -> int:
    """Remove these files' rows (and what points at them, see the module's docstring); returns how many went."""
    db = store.db
    removed = 0
    # This module keeps every reference consistent itself, by index; SQLite's own foreign-key check would look
    # for a deleted file's children (jobs.file_id has no index) by reading every job, once per file.
    db.execute("PRAGMA foreign_keys=OFF")
    try:
        with db:
            db.execute("BEGIN IMMEDIATE")
            file_set = store.get_meta("file_set")
            in_set = 0
            contents: set[str] = set()
            for start in range(0, len(file_ids), CHUNK):
                ids = json.dumps(list(file_ids[start:start + CHUNK]))
                chosen = "(SELECT value FROM json_each(?))"
                if file_set:
                    (n,) = db.execute(f"SELECT COUNT(*) FROM files WHERE id IN {chosen} AND seen_run >= ?",
                                      (ids, file_set["run"])).fetchone()
                    in_set += n
                contents.update(r[0] for r in db.execute(
                    f"SELECT DISTINCT sha256 FROM files WHERE id IN {chosen} AND sha256 IS NOT NULL", (ids,)))
                for table in ("review_state", "review_versions", "review_retry", "near_index"):
                    db.execute(f"DELETE FROM {table} WHERE file_id IN {chosen}", (ids,))
                db.execute(f"UPDATE files SET near_duplicate_of = NULL WHERE near_duplicate_of IN {chosen}", (ids,))
                removed += db.execute(f"DELETE FROM files WHERE id IN {chosen}", (ids,)).rowcount
            for sha in contents:
                # The earliest remaining readable file with this content is the original now; the job's file is
                # the earliest remaining one (NULL when none is left: the answer stays for a copy to come).
                (original,) = db.execute("SELECT MIN(id) FROM files WHERE sha256 = ? AND status = 'ok'",
                                         (sha,)).fetchone()
                db.execute("UPDATE files SET duplicate_of = CASE WHEN id = ? THEN NULL ELSE ? END"
                           " WHERE sha256 = ? AND status = 'ok'", (original, original, sha))
                db.execute("UPDATE jobs SET file_id = (SELECT MIN(id) FROM files WHERE sha256 = jobs.sha256)"
                           " WHERE sha256 = ? AND NOT EXISTS (SELECT 1 FROM files f WHERE f.id = jobs.file_id)",
                           (sha,))
            if file_set and file_set.get("counted") is not None and in_set:
                store.set_meta("file_set", {**file_set, "counted": max(0, int(file_set["counted"]) - in_set)})
    finally:
        db.execute("PRAGMA foreign_keys=ON")
    return removed


def missing_candidates(db: sqlite3.Connection, after: int, limit: int) -> list[sqlite3.Row]:
    """The next files (by id) to check on disk: id, path (bytes), display and root."""
    return db.execute("SELECT id, path, display, root FROM files WHERE id > ? ORDER BY id LIMIT ?",
                      (after, limit)).fetchall()


def reviewed_among(db: sqlite3.Connection, file_ids: Sequence[int]) -> int:
    """How many of these images a person edited, approved or rejected (in any target)."""
    total = 0
    for start in range(0, len(file_ids), CHUNK):
        (n,) = db.execute("SELECT COUNT(DISTINCT file_id) FROM review_state WHERE file_id IN"
                          " (SELECT value FROM json_each(?)) AND (reviewed <> 0 OR edits <> '{}')",
                          (json.dumps(list(file_ids[start:start + CHUNK])),)).fetchone()
        total += n
    return total
