"""SQLite access for the store. Every write is its own short transaction, committed at once:
a result is durable the moment it is recorded, so a kill -9 loses at most the requests in flight."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from imgtag.config.errors import UsageError
from imgtag.pricing.costs import Usage
from imgtag.store import runstate
from imgtag.store.lock import FolderLock
from imgtag.store.migrations import MIGRATIONS, migrate
from imgtag.store.rows import ResultRow, current_fields, edited_names

DB_NAME = "imgtag.db"


def writable(out_dir: Path) -> bool:
    """Whether this process may write the store in `out_dir` and the -wal and -shm files SQLite keeps beside it
    (a read-only folder, file or file system: no)."""
    db = Path(out_dir) / DB_NAME
    if not os.access(out_dir, os.W_OK | os.X_OK):
        return False
    return all(os.access(p, os.W_OK) for p in (db, db.with_name(DB_NAME + "-wal"), db.with_name(DB_NAME + "-shm"))
               if p.exists())


class StoreUnusableError(UsageError):
    """SQLite cannot open the store: the file is not a database, or its folder refuses the WAL files beside it."""


def _unusable(db_path: Path, exc: sqlite3.DatabaseError) -> StoreUnusableError:
    # SQLite writes -wal and -shm files beside the database even to read it, so a read-only folder (a mounted
    # backup, a share) fails here with "unable to open database file", which alone does not say why.
    why = "" if os.access(db_path.parent, os.W_OK) else " (its folder is read-only; copy it somewhere writable)"
    return StoreUnusableError(f"cannot open the store {db_path}: {exc}{why}")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class WorkKey:
    """What makes two requests the same paid work (besides the image content)."""

    preset_version: str
    provider: str
    model: str


@dataclass(frozen=True)
class FileRecord:
    path: str
    display: str
    root: str | None
    size: int | None
    mtime_ns: int | None
    status: str
    reason_code: str | None = None
    reason: str | None = None
    sha256: str | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None
    phash: str | None = None
    blur: float | None = None
    out_width: int | None = None
    out_height: int | None = None
    visual_tokens: int | None = None


@dataclass(frozen=True)
class JobState:
    id: int
    status: str
    attempts: int


class Store:
    def __init__(self, out_dir: Path, *, lock: bool = True, create: bool = True, read_only: bool = False) -> None:
        """`read_only`: for reading a store this process may not write (`writable`); nothing is written or made
        beside it, no lock is taken and the store must be of this version (an upgrade is a write)."""
        self.out_dir = Path(out_dir)
        if create and not read_only:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        elif not (self.out_dir / DB_NAME).exists():
            raise FileNotFoundError(f"no imgtag store in {self.out_dir} (run `imgtag run` first)")
        self._lock = FolderLock(self.out_dir) if lock and not read_only else None
        if self._lock is not None:
            self._lock.acquire()
        if read_only:
            self._open_read_only()
            return
        try:
            self.db = sqlite3.connect(self.out_dir / DB_NAME, isolation_level=None, timeout=30)
            self.db.row_factory = sqlite3.Row
            # WAL: readers (status, export) never block the writer; NORMAL sync is durable across
            # process crashes (only an OS crash could lose the last commits).
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            migrate(self.db, str(self.out_dir / DB_NAME))
            if self._lock is not None:
                runstate.mark_abandoned_runs(self.db)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise _unusable(self.out_dir / DB_NAME, exc) from None
        except BaseException:
            self.close()
            raise

    def _open_read_only(self) -> None:
        path = (self.out_dir / DB_NAME).absolute()
        # A -wal file means a run may be writing (its latest commits are there, not yet in the main file): SQLite
        # reads it read-only through the -wal and -shm files as they are. Without one, everything is in the main
        # file, and `immutable` reads it without making the two files, which a read-only folder refuses (and which
        # would be left beside a read-only file).
        mode = "mode=ro" if path.with_name(DB_NAME + "-wal").exists() else "immutable=1"
        try:
            self.db = sqlite3.connect(f"{path.as_uri()}?{mode}", uri=True, isolation_level=None, timeout=30)
            self.db.row_factory = sqlite3.Row
            (version,) = self.db.execute("PRAGMA user_version").fetchone()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise _unusable(path, exc) from None
        if version != len(MIGRATIONS):
            self.close()
            why = ("a newer imgtag" if version > len(MIGRATIONS)
                   else "an earlier imgtag and needs an upgrade, which writes it")
            raise StoreUnusableError(f"cannot read the read-only store {path}: it was written by {why}; copy it "
                                     "somewhere writable")

    def close(self) -> None:
        if getattr(self, "db", None) is not None:
            self.db.close()
            self.db = None  # type: ignore[assignment]
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- meta and runs -------------------------------------------------------------------------

    def set_meta(self, key: str, value: Any) -> None:
        self.db.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, json.dumps(value, ensure_ascii=False)),
        )

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row["value"]) if row else default

    def start_run(self, command: str, *, key: WorkKey | None = None, preset: str | None = None,
                  mode: str | None = None) -> int:
        cur = self.db.execute(
            "INSERT INTO runs(command, started_at, provider, model, preset, preset_version, mode, pid)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (command, now_iso(), key.provider if key else None, key.model if key else None, preset,
             key.preset_version if key else None, mode, os.getpid()),
        )
        return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, exit_code: int) -> None:
        self.db.execute("UPDATE runs SET finished_at=?, exit_code=?, end_state=? WHERE id=?",
                        (now_iso(), exit_code, runstate.FINISHED, run_id))

    # -- files ---------------------------------------------------------------------------------

    def known_files(self, paths: list[str], key: WorkKey | None) -> dict[bytes, sqlite3.Row]:
        """The stored rows of these paths (one statement for a whole chunk of discovered files), by path bytes,
        each with its job's status and last change for `key` (`job_status`, `job_updated`; NULL without a key)."""
        if not paths:
            return {}
        kp = (key.preset_version, key.provider, key.model) if key else ("", "", "")
        rows = self.db.execute(
            f"SELECT {KNOWN_COLUMNS}, j.status AS job_status, j.updated_at AS job_updated FROM files f LEFT JOIN jobs j"
            " ON j.sha256 = f.sha256 AND f.status = 'ok' AND j.preset_version = ? AND j.provider = ? AND j.model = ?"
            f" WHERE f.path IN ({','.join('?' * len(paths))})",
            (*kp, *(os.fsencode(p) for p in paths)),
        ).fetchall()
        return {bytes(r["path"]): r for r in rows}

    def mark_seen(self, file_ids: list[int], run_id: int | None, seen_run: int | None) -> None:
        """Unchanged files a run saw: their `last_run` and (for a real run) `seen_run` in one statement, however
        many there are, instead of one write per file."""
        if file_ids:
            self.db.execute("UPDATE files SET last_run = ?, seen_run = COALESCE(?, seen_run)"
                            " WHERE id IN (SELECT value FROM json_each(?))",
                            (run_id, seen_run, json.dumps(file_ids)))

    def touch_file(self, file_id: int, run_id: int) -> None:
        self.db.execute("UPDATE files SET last_run=? WHERE id=?", (run_id, file_id))

    def upsert_file(self, rec: FileRecord, run_id: int | None, seen_run: int | None = None) -> int:
        """Insert or update a file's row; `seen_run` (a real run whose inputs hold it) puts it in that run's
        file set (fileset.py), None leaves its membership as it was (dry runs, scans)."""
        values = (
            rec.display, rec.root, rec.size, rec.mtime_ns, rec.sha256, rec.status, rec.reason_code, rec.reason,
            rec.format, rec.width, rec.height, rec.phash, rec.blur, rec.out_width, rec.out_height,
            rec.visual_tokens, run_id, seen_run,
        )
        row = self.db.execute(
            "INSERT INTO files(display, root, size, mtime_ns, sha256, status, reason_code, reason, format, width,"
            " height, phash, blur, out_width, out_height, visual_tokens, last_run, seen_run, path)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT(path) DO UPDATE SET display=excluded.display, root=excluded.root, size=excluded.size,"
            " mtime_ns=excluded.mtime_ns, sha256=excluded.sha256, status=excluded.status,"
            " reason_code=excluded.reason_code, reason=excluded.reason, format=excluded.format,"
            " width=excluded.width, height=excluded.height, phash=excluded.phash, blur=excluded.blur,"
            " out_width=excluded.out_width, out_height=excluded.out_height,"
            " visual_tokens=excluded.visual_tokens, last_run=excluded.last_run,"
            " seen_run=COALESCE(excluded.seen_run, files.seen_run)"
            " RETURNING id",
            (*values, os.fsencode(rec.path)),
        ).fetchone()
        return int(row[0])

    def reserve_file(self, path: str, display: str, root: str | None, seen_run: int | None = None) -> None:
        """Give a file its row (and so its place in result order) at discovery, before decoding finishes.

        The placeholder is never trusted as a cached answer (reason_code 'pending'), so a crash mid-decode
        just means the file is examined again."""
        self.db.execute(
            "INSERT INTO files(path, display, root, status, reason_code, reason, seen_run) VALUES (?,?,?,'skipped',"
            "'pending', 'not examined yet', ?) ON CONFLICT(path) DO UPDATE SET display=excluded.display,"
            " seen_run=COALESCE(excluded.seen_run, files.seen_run)",
            (os.fsencode(path), display, root, seen_run),
        )

    def link_duplicates(self, sha256: str) -> int:
        """Among readable files with this content, the earliest discovered is the original; the rest point
        to it. Decoding finishes out of order, so this is recomputed for the whole group each time."""
        (original,) = self.db.execute(
            "SELECT MIN(id) FROM files WHERE sha256=? AND status='ok'", (sha256,)
        ).fetchone()
        self.db.execute(
            "UPDATE files SET duplicate_of = CASE WHEN id=? THEN NULL ELSE ? END WHERE sha256=? AND status='ok'",
            (original, original, sha256),
        )
        return int(original)

    def relink_duplicates(self, sha256: str) -> None:
        """link_duplicates for a content some file just left (changed, or skipped): its remaining readable files
        point to the earliest of them, if any remain."""
        self.db.execute(
            "UPDATE files SET duplicate_of = NULLIF((SELECT MIN(id) FROM files WHERE sha256 = ? AND status = 'ok'),"
            " id) WHERE sha256 = ? AND status = 'ok'", (sha256, sha256))

    def set_near_duplicate(self, file_id: int, near_duplicate_of: int | None) -> None:
        self.db.execute("UPDATE files SET near_duplicate_of=? WHERE id=?", (near_duplicate_of, file_id))

    def file_path(self, file_id: int) -> str:
        row = self.db.execute("SELECT path FROM files WHERE id=?", (file_id,)).fetchone()
        return os.fsdecode(row["path"])

    def display_of(self, file_id: int | None) -> str | None:
        if file_id is None:
            return None
        row = self.db.execute("SELECT display FROM files WHERE id=?", (file_id,)).fetchone()
        return row["display"] if row else None

    # -- jobs ----------------------------------------------------------------------------------

    def job_for(self, sha256: str, key: WorkKey, file_id: int) -> JobState:
        """The job for this content under this key, created pending if new."""
        self.db.execute(
            "INSERT INTO jobs(sha256, preset_version, provider, model, status, file_id, updated_at)"
            " VALUES (?,?,?,?, 'pending', ?, ?) ON CONFLICT DO NOTHING",
            (sha256, key.preset_version, key.provider, key.model, file_id, now_iso()),
        )
        row = self.db.execute(
            "SELECT id, status, attempts FROM jobs WHERE sha256=? AND preset_version=? AND provider=? AND model=?",
            (sha256, key.preset_version, key.provider, key.model),
        ).fetchone()
        return JobState(int(row["id"]), row["status"], int(row["attempts"]))

    def answered_before(self, sha256: str, key: WorkKey, since: str) -> bool:
        """Whether this content's job was settled (ok or failed) before `since` (a run's start): an earlier run's
        answer, not one this run collected or shares with a copy."""
        row = self.db.execute(
            "SELECT 1 FROM jobs WHERE sha256=? AND preset_version=? AND provider=? AND model=?"
            " AND status IN ('ok', 'failed') AND updated_at < ?",
            (sha256, key.preset_version, key.provider, key.model, since),
        ).fetchone()
        return row is not None

    def run_started(self, run_id: int) -> str:
        return str(self.db.execute("SELECT started_at FROM runs WHERE id=?", (run_id,)).fetchone()[0])

    def job_status(self, sha256: str, key: WorkKey) -> str | None:
        row = self.db.execute(
            "SELECT status FROM jobs WHERE sha256=? AND preset_version=? AND provider=? AND model=?",
            (sha256, key.preset_version, key.provider, key.model),
        ).fetchone()
        return row["status"] if row else None

    def record_attempt(self, job_id: int, run_id: int | None, *, started_at: str, outcome: str, mode: str,
                       http_status: int | None = None, error_type: str | None = None,
                       error_message: str | None = None, request_id: str | None = None,
                       usage: Usage | None = None, cost: float | None = None, batch_id: str | None = None,
                       commit_job: dict[str, Any] | None = None,
                       credits: tuple[float | None, float | None] | None = None,
                       raw_answer: str | None = None) -> None:
        """Log one attempt; with commit_job, also settle the job in the same transaction."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.log_attempt(job_id, run_id, started_at=started_at, outcome=outcome, mode=mode,
                             http_status=http_status, error_type=error_type, error_message=error_message,
                             request_id=request_id, usage=usage, cost=cost, batch_id=batch_id, credits=credits,
                             raw_answer=raw_answer)
            if commit_job is not None:
                self._settle(job_id, **commit_job)

    def log_attempt(self, job_id: int, run_id: int | None, *, started_at: str, outcome: str, mode: str,
                    http_status: int | None = None, error_type: str | None = None,
                    error_message: str | None = None, request_id: str | None = None,
                    usage: Usage | None = None, cost: float | None = None, batch_id: str | None = None,
                    credits: tuple[float | None, float | None] | None = None,
                    raw_answer: str | None = None) -> None:
        """Insert the attempt and add its usage to the job, inside the CALLER's transaction (batch collection
        changes the item's state in the same one). Every paid token reaches the job, retries included.
        `credits` is (amount charged, balance after) for credit-billed providers; `raw_answer` the text of a paid
        answer that was not accepted (kept so it is never lost)."""
        u = usage or Usage()
        credits_amount, credits_remaining = credits or (None, None)
        # Tokens paid at prices nobody knows (cost None): counted, so every sum that holds them says unknown.
        unknown = int(cost is None and credits_amount is None and (u.input_tokens + u.output_tokens
                                                                   + u.cache_creation_input_tokens
                                                                   + u.cache_read_input_tokens) > 0)
        self.db.execute(
            "INSERT INTO attempts(job_id, run_id, started_at, finished_at, outcome, http_status, error_type,"
            " error_message, request_id, input_tokens, output_tokens, cache_creation_input_tokens,"
            " cache_read_input_tokens, cost_usd, mode, batch_id, credits_amount, credits_remaining, raw_answer,"
            " cost_unknown) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (job_id, run_id, started_at, now_iso(), outcome, http_status, error_type, error_message, request_id,
             u.input_tokens, u.output_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens,
             cost or 0.0, mode, batch_id, credits_amount, credits_remaining, raw_answer, unknown),
        )
        self.db.execute(
            "UPDATE jobs SET attempts=attempts+1, input_tokens=input_tokens+?, output_tokens=output_tokens+?,"
            " cache_creation_input_tokens=cache_creation_input_tokens+?,"
            " cache_read_input_tokens=cache_read_input_tokens+?, cost_usd=cost_usd+?, cost_unknown=cost_unknown+?,"
            " updated_at=? WHERE id=?",
            (u.input_tokens, u.output_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens,
             cost or 0.0, unknown, now_iso(), job_id),
        )

    def _settle(self, job_id: int, *, status: str, mode: str, fields: dict[str, Any] | None = None,
                error_type: str | None = None, error_message: str | None = None,
                request_id: str | None = None) -> None:
        new_fields = json.dumps(fields, ensure_ascii=False) if fields is not None else None
        keep_replaced_answer(self.db, job_id, new_fields)
        self.db.execute(
            "UPDATE jobs SET status=?, mode=?, fields=?, error_type=?, error_message=?, request_id=?, updated_at=?"
            " WHERE id=?",
            (status, mode, new_fields, error_type, error_message, request_id, now_iso(), job_id),
        )

    def set_job_status(self, job_id: int, status: str) -> None:
        self.db.execute("UPDATE jobs SET status=?, updated_at=? WHERE id=?", (status, now_iso(), job_id))

    def failed_job_files(self, key: WorkKey) -> list[int]:
        rows = self.db.execute(
            "SELECT file_id FROM jobs WHERE status='failed' AND preset_version=? AND provider=? AND model=?",
            (key.preset_version, key.provider, key.model),
        ).fetchall()
        return [int(r[0]) for r in rows]

    def reopen_failed(self, key: WorkKey) -> int:
        cur = self.db.execute(
            "UPDATE jobs SET status='pending', error_type=NULL, error_message=NULL, updated_at=?"
            " WHERE status='failed' AND preset_version=? AND provider=? AND model=?",
            (now_iso(), key.preset_version, key.provider, key.model),
        )
        return cur.rowcount

    def prefix_cached_within(self, key: WorkKey, seconds: float) -> bool:
        """True when a request for this target, sent in the last `seconds`, was answered with the prompt cache read
        or written: the cached prefix (5-minute TTL, refreshed by every read) is then still there for the next
        request. Measured from when the request was sent, not answered: the server refreshed the entry in between,
        so a long answer cannot make an entry look younger than it is."""
        # Newest attempt first (by id): at run start this stops at the last cached answer instead of reading
        # every attempt of a large store.
        row = self.db.execute(
            "SELECT a.started_at FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE j.preset_version=?"
            " AND j.provider=? AND j.model=? AND (a.cache_read_input_tokens > 0 OR a.cache_creation_input_tokens > 0)"
            " ORDER BY a.id DESC LIMIT 1",
            (key.preset_version, key.provider, key.model)).fetchone()
        if not row or not row[0]:
            return False
        age = datetime.now(timezone.utc) - datetime.fromisoformat(row[0])
        return 0 <= age.total_seconds() < seconds

    def last_attempt_id(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(id), 0) FROM attempts").fetchone()[0])

    def last_cache_use_since(self, attempt_id: int) -> float | None:
        """When (time.time()) the newest request logged after `attempt_id` whose answer read or wrote the prompt
        cache was sent; None when there is none. Looks back no further than `attempt_id` (a run's own)."""
        row = self.db.execute(
            "SELECT started_at FROM attempts WHERE id > ? AND mode = 'sync'"
            " AND (cache_read_input_tokens > 0 OR cache_creation_input_tokens > 0) ORDER BY id DESC LIMIT 1",
            (attempt_id,)).fetchone()
        return datetime.fromisoformat(row[0]).timestamp() if row and row[0] else None

    def spent(self, key: WorkKey | None = None) -> float | None:
        """Dollars spent (on this target), or None when some of it was paid at prices nobody knows."""
        if key is None:
            row = self.db.execute("SELECT COALESCE(SUM(cost_usd), 0), SUM(cost_unknown) FROM attempts").fetchone()
        else:
            row = self.db.execute(
                "SELECT COALESCE(SUM(cost_usd), 0), SUM(cost_unknown) FROM jobs WHERE preset_version=?"
                " AND provider=? AND model=?", (key.preset_version, key.provider, key.model),
            ).fetchone()
        return None if row[1] else float(row[0])

    # -- results -------------------------------------------------------------------------------

    def result_rows(self, key: WorkKey, preset_name: str, field_names: list[str] | None = None, *,
                    reviewed_only: bool = False, since_run: int | None = None) -> Iterator[ResultRow]:
        """One row per file, in discovery order; identical content shares its job's result. Streams.
        Fields hold current values: a person's edits (`imgtag review`) over the model's answer.
        With field_names, every ok row's fields hold exactly those keys (an optional field left out is null), so
        the object has one shape in every row. reviewed_only: only images a person approved. With since_run, only
        the files a run from that one on saw (the folder's file set, fileset.py); without, every file the folder
        has seen."""
        cursor = self.db.execute(
            "/* scan: the results are every file, in order */ "
            "SELECT f.path, f.root, f.display, f.sha256, f.status AS fstatus, f.reason_code, f.reason,"
            " d.display AS dup,"
            " j.status AS jstatus, j.fields, j.error_type, j.error_message, j.input_tokens, j.output_tokens,"
            " j.cache_creation_input_tokens, j.cache_read_input_tokens, j.cost_usd, j.cost_unknown, j.mode, j.file_id,"
            " r.edits, r.reviewed,"
            f" CASE WHEN j.status = 'failed' THEN ({KEPT_ANSWER}) END AS raw_answer"
            " FROM files f LEFT JOIN files d ON d.id = f.duplicate_of"
            " LEFT JOIN jobs j ON j.sha256 = f.sha256 AND f.status='ok' AND j.preset_version=? AND j.provider=?"
            " AND j.model=?"
            " LEFT JOIN review_state r ON r.file_id = f.id AND r.preset_version=? AND r.provider=? AND r.model=?"
            " WHERE 1=1" + (" AND r.reviewed = 1 AND j.status = 'ok'" if reviewed_only else "")
            + (" AND f.seen_run >= ?" if since_run is not None else "") + " ORDER BY f.id",
            ((key.preset_version, key.provider, key.model) * 2) + (() if since_run is None else (since_run,)),
        )
        for r in cursor:
            row = _row_from(r, key, preset_name, field_names)
            if field_names and row.fields is not None:
                fields = {name: row.fields.get(name) for name in field_names}
                fields.update((k, v) for k, v in row.fields.items() if k not in fields)
                row = replace(row, fields=fields)
            yield row


# The columns of known_files' rows: first a FileRecord's from size on, in its order (so one is made from a slice).
KNOWN_COLUMNS = ("f.size, f.mtime_ns, f.status, f.reason_code, f.reason, f.sha256, f.format, f.width, f.height,"
                 " f.phash, f.blur, f.out_width, f.out_height, f.visual_tokens, f.id, f.path, f.display, f.root,"
                 " f.duplicate_of, f.near_duplicate_of")
RECORD_FIELDS = 14  # size .. visual_tokens


# The text of a failed job's latest paid answer that was not accepted (attempts.raw_answer, `_v12_raw_answers`).
KEPT_ANSWER = ("SELECT a.raw_answer FROM attempts a WHERE a.job_id = j.id AND a.raw_answer IS NOT NULL"
               " ORDER BY a.id DESC LIMIT 1")


def keep_replaced_answer(db: sqlite3.Connection, job_id: int, new_fields: str | None) -> None:
    """Before a job's answer is replaced (an image asked again, e.g. a retry queued from the review page), keep the
    old one in answer_history: it was paid for, and the review history shows every answer of the model."""
    # When the old answer came: the job's ok attempt before the one just logged (updated_at moves with every
    # attempt, and with the reopening of the job, so it would date the old answer now).
    db.execute(
        "INSERT INTO answer_history(job_id, fields, answered_at, replaced_at) SELECT id, fields,"
        " COALESCE((SELECT finished_at FROM attempts a WHERE a.job_id = jobs.id AND a.outcome = 'ok'"
        " ORDER BY a.id DESC LIMIT 1 OFFSET 1), updated_at), ?"
        " FROM jobs WHERE id=? AND fields IS NOT NULL AND fields IS NOT ?", (now_iso(), job_id, new_fields))


_NO_USAGE = {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def _row_from(r: sqlite3.Row, key: WorkKey, preset_name: str, field_names: list[str] | None = None) -> ResultRow:
    """One shape per status (README "Results contract"): usage is always the four counts, and cost_usd a number
    (zero when nothing was paid), or null when tokens were paid at prices nobody knows."""
    common = {"path": r["display"], "sha256": r["sha256"], "preset": preset_name,
              "preset_version": key.preset_version, "provider": key.provider, "model": key.model,
              "duplicate_of": r["dup"], "source_path": os.fsdecode(r["path"]), "root": r["root"]}
    if r["fstatus"] != "ok" and r["reason_code"] == "pending":
        # Found but not examined yet (the run stopped mid-decode): pending, not skipped, and not hashed yet.
        return ResultRow(status="pending", fields=None, error=None, usage=dict(_NO_USAGE), cost_usd=0.0, **common)
    if r["fstatus"] != "ok":
        return ResultRow(status=r["fstatus"], fields=None,
                         error={"type": r["reason_code"] or r["fstatus"], "message": r["reason"] or "",
                                "raw_answer": None},
                         usage=dict(_NO_USAGE), cost_usd=0.0, **common)
    jstatus = r["jstatus"] or "pending"
    usage = dict(_NO_USAGE)
    cost: float | None = 0.0
    if r["jstatus"] is not None and r["dup"] is None:
        # Paid tokens belong to the first file with this content; copies cost nothing.
        usage = {"input_tokens": r["input_tokens"], "output_tokens": r["output_tokens"],
                 "cache_creation_input_tokens": r["cache_creation_input_tokens"],
                 "cache_read_input_tokens": r["cache_read_input_tokens"]}
        cost = None if r["cost_unknown"] else float(r["cost_usd"])
    if jstatus == "ok":
        edits = json.loads(r["edits"]) if r["edits"] else None
        return ResultRow(status="ok", fields=current_fields(json.loads(r["fields"]), edits), error=None, usage=usage,
                         cost_usd=cost, mode=r["mode"], reviewed=r["reviewed"] == 1,
                         edited_fields=tuple(edited_names(edits, field_names)), **common)
    if jstatus == "failed":
        return ResultRow(status="failed", fields=None,
                         error={"type": r["error_type"] or "error", "message": r["error_message"] or "",
                                "raw_answer": r["raw_answer"]},
                         usage=usage, cost_usd=cost, mode=r["mode"], **common)
    return ResultRow(status="pending", fields=None, error=None, usage=usage, cost_usd=cost, **common)
