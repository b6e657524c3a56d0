"""Store functions for batches (any BatchAPI): submissions, items and batches (tables from migration v1).

The crash-safety protocol lives in these transactions:
1. `begin_submission`: a `batch_submissions` row and its `batch_items` (state 'submitting', no batch id)
   are committed BEFORE the create call, so a kill between "created remotely" and "id stored" can be
   reconciled by listing the account's batches instead of paying twice.
2. `attach_batch`: batch id on the submission and items, the `batches` row and the jobs' status
   'batched', all in one transaction.
3. `settle_item`: one result line -> attempt + job + item state in one transaction, guarded by the
   item's state, so collecting a batch again after an interruption never records an item twice.

Item states: submitting -> submitted -> ok | failed | errored | expired | canceled | missing | superseded | split;
submitting -> unsent (the create never happened: the job is pending again).

One item per image. With `--images-per-request K` one batch request carries up to K images: their items share
`request_cid` (the custom_id sent to the API) and `position` says which labelled answer is each one's own.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imgtag.pricing.costs import Usage
from imgtag.store.db import Store, WorkKey, keep_replaced_answer, now_iso

if TYPE_CHECKING:
    from imgtag.providers.batch_api import BatchHandle

SUBMITTING, SUBMITTED, UNSENT = "submitting", "submitted", "unsent"
# A pack refused as a whole (errored as an invalid request, not billed): its jobs are pending again, alone.
SPLIT = "split"
# Results that send the job back to pending and count toward the per-job batch attempt cap.
RETRYABLE_STATES = ("errored", "expired", "missing")
# Stored as the submission's batch id when we know no batch was created, so it is not reconciled again.
NOT_CREATED = "-"

_CUSTOM_ID = re.compile(r"^j(\d+)-(\d+)$")
# A random prefix per store: submission ids restart at 1 in every store, but a label must name one submission
# among every batch of the account.
LABEL_PREFIX_META = "batch_label_prefix"


def custom_id(job_id: int, submission_id: int) -> str:
    """`j{job}-{submission}`: unique forever (a job is in a submission at most once and submission ids are
    never reused), matches ^[a-zA-Z0-9_-]{1,64}$, and names the submission a result came from."""
    return f"j{job_id}-{submission_id}"


def parse_custom_id(value: str) -> tuple[int, int] | None:
    m = _CUSTOM_ID.match(value)
    return (int(m.group(1)), int(m.group(2))) if m else None


@dataclass(frozen=True)
class Submission:
    id: int
    created_at: str
    item_count: int


@dataclass(frozen=True)
class BatchRow:
    id: str
    provider: str
    model: str
    processing_status: str
    item_count: int
    request_counts: dict[str, int] | None
    ended_at: str | None
    created_at: str


@dataclass(frozen=True)
class ItemOutcome:
    """What one result does to its job. `job_status` None leaves the job as it is (already settled)."""

    item_state: str
    attempt_outcome: str
    job_status: str | None
    fields: dict[str, Any] | None = None
    error_type: str | None = None
    error_message: str | None = None
    usage: Usage | None = None
    cost: float | None = 0.0  # None: tokens paid at prices nobody knows
    request_id: str | None = None
    raw_answer: str | None = None  # a paid answer that was not accepted: kept on its attempt


# -- submission --------------------------------------------------------------------------------------

def begin_submission(store: Store, requests: Sequence[Sequence[int]]) -> tuple[Submission, list[str]]:
    """Commit the intent to create a batch of these requests, each carrying one or more jobs (a pack of
    labelled images); returns the submission and each request's custom id (its first job's item id)."""
    db = store.db
    now = now_iso()
    with db:
        db.execute("BEGIN IMMEDIATE")
        sid = int(db.execute("INSERT INTO batch_submissions(created_at, item_count) VALUES (?, ?)",
                             (now, len(requests))).lastrowid or 0)
        request_cids = [custom_id(jobs[0], sid) for jobs in requests]
        db.executemany("INSERT INTO batch_items(custom_id, batch_id, job_id, state, created_at, request_cid, position)"
                       " VALUES (?, NULL, ?, 'submitting', ?, ?, ?)",
                       [(custom_id(job_id, sid), job_id, now, rcid, position)
                        for rcid, jobs in zip(request_cids, requests, strict=True)
                        for position, job_id in enumerate(jobs)])
    return Submission(sid, now, len(requests)), request_cids


def submission_label(store: Store, submission_id: int) -> str:
    """The label a batch API that keeps metadata attaches to this submission's batch (reconcile matches it)."""
    prefix = store.get_meta(LABEL_PREFIX_META)
    if not prefix:
        prefix = secrets.token_hex(8)
        store.set_meta(LABEL_PREFIX_META, prefix)
    return f"imgtag-{prefix}-{submission_id}"


def submission_items(store: Store, submission_id: int) -> list[tuple[str, int]]:
    """(custom_id, job_id) of a submission's items still waiting for their batch id."""
    rows = store.db.execute(
        "SELECT custom_id, job_id FROM batch_items WHERE state='submitting' AND batch_id IS NULL"
        " AND custom_id LIKE ?", (f"j%-{submission_id}",)).fetchall()
    return [(r[0], int(r[1])) for r in rows if (parse_custom_id(r[0]) or (0, -1))[1] == submission_id]


def attach_batch(store: Store, submission_id: int, batch: BatchHandle, *, provider: str, model: str,
                 run_id: int | None, nbytes: int) -> int:
    """The create call returned (or a reconcile found the batch): record it, all in one transaction.

    Returns how many jobs became 'batched'."""
    db = store.db
    items = submission_items(store, submission_id)
    with db:
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT INTO batches(id, provider, model, run_id, created_at, processing_status, request_counts,"
            " item_count, bytes) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING",
            (batch.id, provider, model, run_id, _iso(batch.created_at), batch.processing_status,
             json.dumps(counts_of(batch)), _request_count(store, submission_id), nbytes))
        db.execute("UPDATE batch_submissions SET batch_id=? WHERE id=?", (batch.id, submission_id))
        db.executemany("UPDATE batch_items SET batch_id=?, state='submitted' WHERE custom_id=?",
                       [(batch.id, cid) for cid, _ in items])
        # Pending (or failed, for `imgtag retry`) jobs only: a job answered meanwhile (e.g. by a sync run
        # after a crash) keeps its result.
        db.executemany("UPDATE jobs SET status='batched', updated_at=? WHERE id=?"
                       " AND status IN ('pending', 'failed')", [(now_iso(), job_id) for _, job_id in items])
    return len(items)


def _request_count(store: Store, submission_id: int) -> int:
    row = store.db.execute("SELECT item_count FROM batch_submissions WHERE id=?", (submission_id,)).fetchone()
    return int(row[0]) if row else 0


def abandon_submission(store: Store, submission_id: int) -> None:
    """No batch was created for this submission: its items are 'unsent' and their jobs stay pending."""
    db = store.db
    with db:
        db.execute("BEGIN IMMEDIATE")
        db.executemany("UPDATE batch_items SET state='unsent' WHERE custom_id=?",
                       [(cid,) for cid, _ in submission_items(store, submission_id)])
        db.execute("UPDATE batch_submissions SET batch_id=? WHERE id=?", (NOT_CREATED, submission_id))


def send_alone(store: Store, job_ids: Sequence[int]) -> None:
    """These jobs' pack could not be sent (too large for the batch API, or refused as a whole): mark their latest
    items SPLIT, so they are resubmitted one image per request (`must_go_alone`). Their jobs stay pending."""
    db = store.db
    with db:
        db.execute("BEGIN IMMEDIATE")
        db.executemany("UPDATE batch_items SET state=? WHERE custom_id=(SELECT custom_id FROM batch_items"
                       " WHERE job_id=? ORDER BY rowid DESC LIMIT 1)", [(SPLIT, job_id) for job_id in job_ids])


def orphan_submissions(store: Store) -> list[Submission]:
    rows = store.db.execute("SELECT id, created_at, item_count FROM batch_submissions WHERE batch_id IS NULL"
                            " ORDER BY id").fetchall()
    return [Submission(int(r[0]), r[1], int(r[2])) for r in rows]


def known_batch_ids(store: Store) -> set[str]:
    return {r[0] for r in store.db.execute("SELECT id FROM batches")}


def submission_model(store: Store, submission_id: int) -> tuple[str, str] | None:
    items = submission_items(store, submission_id)
    if not items:
        return None
    row = store.db.execute("SELECT provider, model FROM jobs WHERE id=?", (items[0][1],)).fetchone()
    return (row[0], row[1]) if row else None


# -- batches -----------------------------------------------------------------------------------------

def live_batches(store: Store, key: WorkKey | None = None) -> list[BatchRow]:
    """Batches whose results are not fully stored yet; with a key, only those holding that key's jobs
    (judging a result needs the preset that asked for it)."""
    rows = store.db.execute("SELECT id, provider, model, processing_status, item_count, request_counts,"
                            " ended_at, created_at FROM batches WHERE collected_at IS NULL"
                            " ORDER BY created_at, id").fetchall()
    out = [_batch_row(r) for r in rows]
    if key is None:
        return out
    return [b for b in out if batch_key(store, b.id) in (key, None)]


def batch_key(store: Store, batch_id: str) -> WorkKey | None:
    row = store.db.execute("SELECT j.preset_version, j.provider, j.model FROM batch_items b JOIN jobs j"
                           " ON j.id = b.job_id WHERE b.batch_id=? LIMIT 1", (batch_id,)).fetchone()
    return WorkKey(row[0], row[1], row[2]) if row else None


def images_per_request(store: Store, batch_id: str) -> float:
    """How many images a request of this batch carries on average (packs: --images-per-request)."""
    row = store.db.execute("SELECT COUNT(*), COUNT(DISTINCT request_cid) FROM batch_items WHERE batch_id=?",
                           (batch_id,)).fetchone()
    return row[0] / row[1] if row and row[1] else 1.0


def batch_requests(store: Store, batch_id: str) -> int:
    """How many requests the batch was created with (a pack of images is one)."""
    row = store.db.execute("SELECT item_count FROM batches WHERE id=?", (batch_id,)).fetchone()
    return int(row[0]) if row else 0


def update_batch(store: Store, batch: BatchHandle) -> None:
    """Keep `imgtag status` current: processing status and request counts on every poll."""
    store.db.execute("UPDATE batches SET processing_status=?, request_counts=?, ended_at=? WHERE id=?",
                     (batch.processing_status, json.dumps(counts_of(batch)),
                      _iso(batch.ended_at) if batch.ended_at else None, batch.id))


def mark_batch_missing(store: Store, batch_id: str) -> int:
    """The API no longer knows this batch (deleted, archived): its unanswered items go back to pending."""
    store.db.execute("UPDATE batches SET processing_status='missing' WHERE id=?", (batch_id,))
    return finish_collection(store, batch_id, leftover_state="missing")


def unanswered_requests(store: Store, batch_id: str) -> list[str]:
    """The custom ids (as the API knows them) of this batch's requests that got no result line yet."""
    rows = store.db.execute("SELECT DISTINCT request_cid FROM batch_items WHERE batch_id=? AND state=?",
                            (batch_id, SUBMITTED)).fetchall()
    return [r[0] for r in rows]


def finish_collection(store: Store, batch_id: str, *, leftover_state: str = "missing") -> int:
    """All result lines are stored: items that got none go back to pending; the batch is collected.

    Returns how many items had no result."""
    db = store.db
    with db:
        db.execute("BEGIN IMMEDIATE")
        leftovers = db.execute("SELECT custom_id, job_id FROM batch_items WHERE batch_id=?"
                               " AND state='submitted'", (batch_id,)).fetchall()
        db.executemany("UPDATE batch_items SET state=? WHERE custom_id=?",
                       [(leftover_state, r[0]) for r in leftovers])
        db.executemany("UPDATE jobs SET status='pending', updated_at=? WHERE id=? AND status='batched'",
                       [(now_iso(), r[1]) for r in leftovers])
        db.execute("UPDATE batches SET collected_at=? WHERE id=?", (now_iso(), batch_id))
    return len(leftovers)


# -- items -------------------------------------------------------------------------------------------

def request_items(store: Store, request_cid: str) -> list[sqlite3.Row]:
    """The items (one per image) of the request the API knows by this custom id, in label order."""
    return store.db.execute("SELECT b.custom_id, b.batch_id, b.job_id, b.state, b.position FROM batch_items b"
                            " WHERE b.request_cid=? ORDER BY b.position", (request_cid,)).fetchall()


def must_go_alone(store: Store, job_id: int) -> bool:
    """A pack holding this job was refused as a whole (one bad image makes the request invalid): from then on
    the job is sent one image per request, so a bad image fails alone and the others are answered."""
    row = store.db.execute("SELECT 1 FROM batch_items WHERE job_id=? AND state=? LIMIT 1",
                           (job_id, SPLIT)).fetchone()
    return row is not None


def batch_failures(store: Store, job_id: int) -> int:
    """How many of this job's batch requests came back errored/expired/missing (the resubmission cap)."""
    marks = ",".join("?" * len(RETRYABLE_STATES))
    row = store.db.execute(f"SELECT COUNT(*) FROM batch_items WHERE job_id=? AND state IN ({marks})",
                           (job_id, *RETRYABLE_STATES)).fetchone()
    return int(row[0])


def answers_rejected(store: Store, job_id: int, error_type: str) -> int:
    """How many paid answers for this job were rejected for this reason (e.g. truncated, invalid_output)."""
    row = store.db.execute("SELECT COUNT(*) FROM attempts WHERE job_id=? AND error_type=?"
                           " AND (input_tokens > 0 OR output_tokens > 0)", (job_id, error_type)).fetchone()
    return int(row[0])


def settle_item(store: Store, cid: str, batch_id: str, run_id: int | None, outcome: ItemOutcome,
                started_at: str) -> bool:
    """Store one result line. False (and nothing written) when the item is unknown, belongs to another
    batch, or was already settled by an earlier, interrupted collection."""
    db = store.db
    with db:
        db.execute("BEGIN IMMEDIATE")
        row = db.execute("SELECT job_id, state, batch_id FROM batch_items WHERE custom_id=?",
                         (cid,)).fetchone()
        if row is None or row["batch_id"] != batch_id or row["state"] != SUBMITTED:
            return False
        job_id = int(row["job_id"])
        store.log_attempt(job_id, run_id, started_at=started_at, outcome=outcome.attempt_outcome, mode="batch",
                          error_type=outcome.error_type, error_message=outcome.error_message,
                          request_id=outcome.request_id, usage=outcome.usage, cost=outcome.cost,
                          batch_id=batch_id, raw_answer=outcome.raw_answer)
        state = outcome.item_state
        if outcome.job_status is not None:
            # Guarded on 'batched': a job settled some other way keeps its result; this answer is only billed.
            new_fields = json.dumps(outcome.fields, ensure_ascii=False) if outcome.fields is not None else None
            if db.execute("SELECT 1 FROM jobs WHERE id=? AND status='batched'", (job_id,)).fetchone():
                keep_replaced_answer(db, job_id, new_fields)
            cur = db.execute(
                "UPDATE jobs SET status=?, mode='batch', fields=?, error_type=?, error_message=?,"
                " request_id=?, updated_at=? WHERE id=? AND status='batched'",
                (outcome.job_status, new_fields, outcome.error_type, outcome.error_message, outcome.request_id,
                 now_iso(), job_id))
            if cur.rowcount == 0:
                state = "superseded"
        db.execute("UPDATE batch_items SET state=? WHERE custom_id=?", (state, cid))
    return True


def fail_job(store: Store, job_id: int, run_id: int | None, error_type: str, message: str) -> None:
    """A job that cannot be (re)submitted at all: recorded as a failure with its cause."""
    store.record_attempt(job_id, run_id, started_at=now_iso(), outcome="failed", mode="batch",
                         error_type=error_type, error_message=message,
                         commit_job={"status": "failed", "mode": "batch", "error_type": error_type,
                                     "error_message": message})


@dataclass(frozen=True)
class PendingJob:
    id: int
    sha256: str
    file_id: int | None


def resubmittable_jobs(store: Store, key: WorkKey, after_id: int = 0, limit: int = 500) -> list[PendingJob]:
    """Pending jobs of this key that have been in a batch before (errored, expired, canceled, unsent...):
    one page at a time, by job id, so a huge backlog is never loaded at once."""
    rows = store.db.execute(
        "SELECT j.id, j.sha256, j.file_id FROM jobs j WHERE j.status='pending' AND j.preset_version=?"
        " AND j.provider=? AND j.model=? AND j.id>?"
        " AND EXISTS (SELECT 1 FROM batch_items b WHERE b.job_id=j.id)"
        " ORDER BY j.id LIMIT ?", (key.preset_version, key.provider, key.model, after_id, limit)).fetchall()
    return [PendingJob(int(r[0]), r[1], r[2]) for r in rows]


def files_with_sha(store: Store, sha256: str, first: int | None) -> Iterator[str]:
    """Paths holding this content, the job's own file first (any of them can be re-read to resubmit)."""
    if first is not None:
        yield store.file_path(first)
    rows = store.db.execute("SELECT id FROM files WHERE sha256=? AND status='ok' AND id IS NOT ? ORDER BY id",
                            (sha256, first)).fetchall()
    for row in rows:
        yield store.file_path(int(row[0]))


# -- helpers -----------------------------------------------------------------------------------------

def counts_of(batch: BatchHandle) -> dict[str, int]:
    return dict(batch.counts)


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _batch_row(r: sqlite3.Row) -> BatchRow:
    counts = json.loads(r["request_counts"]) if r["request_counts"] else None
    return BatchRow(r["id"], r["provider"], r["model"], r["processing_status"], int(r["item_count"]), counts,
                    r["ended_at"], r["created_at"])
