"""A person's review of a target's results: edits and approvals, stored beside the model's answer.

The model's answer (jobs.fields) is never changed by a person. A field's current value is the latest human
value (review_state.edits), else the model's: `store.rows.current_fields` is the one place that rule lives,
and `Store.result_rows` uses it, so every export writes current values without knowing about review.

Writers here touch only the review tables, each write one short transaction (BEGIN IMMEDIATE under SQLite's
busy timeout), so the review server can write while `imgtag run` holds the folder lock and writes jobs.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgtag.store import tallies
from imgtag.store.db import WorkKey, now_iso
from imgtag.store.rows import current_fields, edited_names

__all__ = ["current_fields", "edited_names"]  # the rule every reader uses lives with ResultRow

APPROVED, NOT_REVIEWED, REJECTED = 1, 0, -1


def load_edits(text: str | None) -> dict[str, Any]:
    return json.loads(text) if text else {}


def dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass
class Change:
    """One image's new review state, written as one version."""

    file_id: int
    edits: dict[str, Any]
    reviewed: int
    before_edits: dict[str, Any]
    before_reviewed: int
    before_version: int
    # The same as JSON text when the caller already has it (undo copies stored text back without parsing it).
    edits_text: str | None = None
    before_text: str | None = None


@dataclass
class ReviewCounts:
    ok: int = 0
    reviewed: int = 0
    rejected: int = 0
    edited: int = 0

    @property
    def not_reviewed(self) -> int:
        return self.ok - self.reviewed - self.rejected

    def as_dict(self) -> dict[str, int]:
        return {"reviewed": self.reviewed, "rejected": self.rejected, "edited": self.edited,
                "not_reviewed": self.not_reviewed}


@dataclass
class StateRow:
    """What a review write needs to know about one image."""

    file_id: int
    model: dict[str, Any] | None
    edits: dict[str, Any] = field(default_factory=dict)
    reviewed: int = NOT_REVIEWED
    version: int = 0


def _kp(key: WorkKey) -> tuple[str, str, str]:
    return (key.preset_version, key.provider, key.model)


def review_counts(db: sqlite3.Connection, key: WorkKey, since_run: int | None = None,
                  ok: int | None = None) -> ReviewCounts:
    """Approved, rejected and edited images among the target's answered (ok) ones; with since_run, among the
    folder's file set only (the latest run's inputs, fileset.py), as `status` counts its files. `ok`: the number of
    those answered images when the caller has counted them already (`status`: its summary's ok)."""
    in_set = " AND f.seen_run >= ?" if since_run is not None else ""
    set_params: tuple[int, ...] = () if since_run is None else (since_run,)
    if ok is None:
        (ok,) = db.execute(
            "SELECT COUNT(*) FROM jobs j JOIN files f ON f.sha256 = j.sha256 AND f.status = 'ok'" + in_set
            + " WHERE j.preset_version = ? AND j.provider = ? AND j.model = ? AND j.status = 'ok'",
            (*set_params, *_kp(key))).fetchone()
    kept = tallies.reviews(db, key, since_run)
    if kept is not None:  # as the store keeps them counted (store/tallies.py)
        return ReviewCounts(int(ok), *kept)
    # From the review rows (only the images a person touched), never a pass over every file.
    row = db.execute(
        "SELECT COALESCE(SUM(r.reviewed = 1), 0), COALESCE(SUM(r.reviewed = -1), 0), COALESCE(SUM(r.edits <> '{}'), 0)"
        " FROM review_state r CROSS JOIN files f ON f.id = r.file_id AND f.status = 'ok'" + in_set
        + " CROSS JOIN jobs j ON j.sha256 = f.sha256 AND j.preset_version = r.preset_version"
        " AND j.provider = r.provider AND j.model = r.model AND j.status = 'ok'"
        " WHERE r.preset_version = ? AND r.provider = ? AND r.model = ?", (*set_params, *_kp(key))).fetchone()
    return ReviewCounts(ok=int(ok), reviewed=row[0], rejected=row[1], edited=row[2])


def state_rows(db: sqlite3.Connection, key: WorkKey, file_ids: Iterable[int]) -> list[StateRow]:
    """Model answer and review state of these images (answered ones only), in id order."""
    ids = sorted(set(file_ids))
    out: list[StateRow] = []
    # Chunks keep each statement small; the ids go in as one JSON array (no variable limit, no temp table).
    for start in range(0, len(ids), 30_000):
        chunk = ids[start:start + 30_000]
        for r in db.execute(
                "SELECT f.id, j.fields, r.edits, r.reviewed, r.version FROM files f"
                " JOIN jobs j ON j.sha256 = f.sha256 AND f.status = 'ok' AND j.status = 'ok'"
                " AND j.preset_version = ? AND j.provider = ? AND j.model = ?"
                " LEFT JOIN review_state r ON r.file_id = f.id AND r.preset_version = j.preset_version"
                " AND r.provider = j.provider AND r.model = j.model"
                " WHERE f.id IN (SELECT value FROM json_each(?)) ORDER BY f.id", (*_kp(key), json.dumps(chunk))):
            out.append(StateRow(r[0], json.loads(r[1]) if r[1] else None, load_edits(r[2]),
                                r[3] if r[3] is not None else NOT_REVIEWED, r[4] or 0))
    return out


def open_connection(db_path: Path) -> sqlite3.Connection:
    """A connection for the review server: WAL reads never wait for the run; writes wait (busy timeout) for the
    run's short transactions, never for its folder lock. Shared by the server's worker threads under a lock."""
    db = sqlite3.connect(db_path, isolation_level=None, timeout=30, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA foreign_keys=ON")
    return db


def begin(db: sqlite3.Connection) -> None:
    """Start a write transaction: waits (busy timeout) for the run's short writes, never for its folder lock."""
    db.execute("BEGIN IMMEDIATE")


def write_changes(db: sqlite3.Connection, key: WorkKey, kind: str, op: dict[str, Any],
                  changes: Sequence[Change]) -> int:
    """Record one operation and each image's new state as a version, inside the caller's transaction.
    Returns the operation's id (what undo takes)."""
    op_id = start_op(db, key, kind, op)
    write_versions(db, key, op_id, changes)
    finish_op(db, op_id, len(changes))
    return op_id


def start_op(db: sqlite3.Connection, key: WorkKey, kind: str, op: dict[str, Any]) -> int:
    """The operation's row; its versions follow in chunks (a bulk operation on 100,000 images never holds them
    all in memory), then finish_op counts them. All inside the caller's one transaction."""
    return int(db.execute(
        "INSERT INTO review_ops(preset_version, provider, model, kind, op, changed, created_at)"
        " VALUES (?,?,?,?,?,0,?)", (*_kp(key), kind, dump(op), now_iso())).lastrowid or 0)


def finish_op(db: sqlite3.Connection, op_id: int, changed: int) -> None:
    db.execute("UPDATE review_ops SET changed = ? WHERE id = ?", (changed, op_id))


def write_versions(db: sqlite3.Connection, key: WorkKey, op_id: int, changes: Sequence[Change]) -> None:
    at = now_iso()
    kp = _kp(key)
    texts = [(c.edits_text or dump(c.edits), c.before_text or dump(c.before_edits)) for c in changes]
    db.executemany(
        "INSERT INTO review_state(file_id, preset_version, provider, model, edits, reviewed, version, updated_at)"
        " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET edits = excluded.edits,"
        " reviewed = excluded.reviewed, version = excluded.version, updated_at = excluded.updated_at",
        ((c.file_id, *kp, text, c.reviewed, c.before_version + 1, at)
         for c, (text, _) in zip(changes, texts, strict=True)))
    db.executemany(
        "INSERT INTO review_versions(file_id, preset_version, provider, model, version, op_id, edits, reviewed,"
        " before_edits, before_reviewed, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        ((c.file_id, *kp, c.before_version + 1, op_id, text, c.reviewed, before, c.before_reviewed, at)
         for c, (text, before) in zip(changes, texts, strict=True)))


@dataclass
class OpVersion:
    """One image's version written by an operation, with the image's state now (for undo). JSON is kept as
    text and parsed only when needed: an undo of an untouched bulk operation copies the text back."""

    file_id: int
    version: int
    edits_text: str
    reviewed: int
    before_text: str
    before_reviewed: int
    now_version: int
    now_text: str
    now_reviewed: int

    @property
    def edits(self) -> dict[str, Any]:
        return load_edits(self.edits_text)

    @property
    def before_edits(self) -> dict[str, Any]:
        return load_edits(self.before_text)

    @property
    def now_edits(self) -> dict[str, Any]:
        return load_edits(self.now_text)


def op_record(db: sqlite3.Connection, op_id: int) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM review_ops WHERE id = ?", (op_id,)).fetchone()


def op_versions(db: sqlite3.Connection, op_id: int, chunk: int = 10_000) -> Iterator[list[OpVersion]]:
    """The versions an operation wrote, in chunks of image ids (memory stays flat for any size)."""
    after = -1
    while True:
        rows = db.execute(
            "SELECT v.file_id, v.version, v.edits, v.reviewed, v.before_edits, v.before_reviewed, s.version,"
            " s.edits, s.reviewed FROM review_versions v JOIN review_state s ON s.file_id = v.file_id"
            " AND s.preset_version = v.preset_version AND s.provider = v.provider AND s.model = v.model"
            " WHERE v.op_id = ? AND v.file_id > ? ORDER BY v.file_id LIMIT ?", (op_id, after, chunk)).fetchall()
        if not rows:
            return
        yield [OpVersion(*r) for r in rows]
        after = rows[-1][0]


def mark_undone(db: sqlite3.Connection, op_id: int) -> None:
    db.execute("UPDATE review_ops SET undone_at = ? WHERE id = ?", (now_iso(), op_id))


def versions_of(db: sqlite3.Connection, key: WorkKey, file_id: int) -> list[sqlite3.Row]:
    """An image's human versions, oldest first, with the kind of operation that wrote each."""
    return db.execute(
        "SELECT v.version, v.edits, v.reviewed, v.created_at, o.kind, o.id AS op_id FROM review_versions v"
        " JOIN review_ops o ON o.id = v.op_id WHERE v.file_id = ? AND v.preset_version = ? AND v.provider = ?"
        " AND v.model = ? ORDER BY v.id", (file_id, *_kp(key))).fetchall()


def model_answers(db: sqlite3.Connection, key: WorkKey, file_id: int) -> list[tuple[str, dict[str, Any]]]:
    """The model's answers for an image, oldest first: (when, fields). Earlier ones were replaced by a new ask."""
    # The current answer's time is its ok attempt's (updated_at also moves when a job is reopened).
    job = db.execute(
        "SELECT j.id, j.fields, COALESCE((SELECT MAX(a.finished_at) FROM attempts a WHERE a.job_id = j.id"
        " AND a.outcome = 'ok'), j.updated_at) FROM files f JOIN jobs j ON j.sha256 = f.sha256"
        " AND j.preset_version = ? AND j.provider = ? AND j.model = ? WHERE f.id = ?", (*_kp(key), file_id)).fetchone()
    if job is None:
        return []
    answers = [(r[0], json.loads(r[1])) for r in db.execute(
        "SELECT answered_at, fields FROM answer_history WHERE job_id = ? ORDER BY id", (job[0],))]
    if job[1]:
        answers.append((job[2], json.loads(job[1])))
    return answers


def queue_retry(db: sqlite3.Connection, key: WorkKey, file_id: int) -> None:
    db.execute("INSERT INTO review_retry(file_id, preset_version, provider, model, queued_at) VALUES (?,?,?,?,?)"
               " ON CONFLICT DO NOTHING", (file_id, *_kp(key), now_iso()))


def queued_retries(db: sqlite3.Connection, key: WorkKey) -> list[int]:
    return [r[0] for r in db.execute(
        "SELECT file_id FROM review_retry WHERE preset_version = ? AND provider = ? AND model = ? ORDER BY file_id",
        _kp(key))]


def clear_retries(db: sqlite3.Connection, key: WorkKey, file_ids: Iterable[int]) -> None:
    db.executemany("DELETE FROM review_retry WHERE file_id = ? AND preset_version = ? AND provider = ? AND model = ?",
                   ((i, *_kp(key)) for i in file_ids))
