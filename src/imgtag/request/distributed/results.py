"""Ingest result shards into the store: the store stays the single source of truth.

Idempotent by construction: a shard is applied in one transaction together with its name in `ray_shards`,
so applying it again changes nothing, and a crash half way applies none of it. A job that is already `ok`
is never overwritten (a second answer for it, e.g. from a task Ray retried, is still logged as a paid
attempt, so the spend stays true). Rows for another store (a work folder shared by mistake) are ignored.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import Any

from imgtag.pricing.costs import Usage
from imgtag.request.distributed.workfolder import WorkFolder
from imgtag.store import Store
from imgtag.store.db import now_iso

SETTLED = ("ok", "failed")
_LOG_FIELDS = set(inspect.signature(Store.log_attempt).parameters) - {"self", "job_id", "run_id", "usage", "credits"}


@dataclass
class IngestTally:
    shards: int = 0
    ok: int = 0
    failed: int = 0
    unsettled: int = 0
    spent_usd: float = 0.0
    fatal: str | None = None
    problems: list[str] = field(default_factory=list)   # one line per unreadable shard or unsettled job
    # With events: (job id, path, "ok"/"failed", this run's cost (None: unknown prices), error type) per job
    # settled, taken by the driver after each shard (None: not collected).
    settled: list[tuple[int, str, str, float | None, str | None]] | None = None


def already_ingested(store: Store) -> set[str]:
    return {row[0] for row in store.db.execute("SELECT name FROM ray_shards")}


def ingest_shard(store: Store, folder: WorkFolder, name: str, run_id: int | None, store_id: str,
                 tally: IngestTally) -> bool:
    """Apply one shard; False when it was already applied or cannot be read yet."""
    if store.db.execute("SELECT 1 FROM ray_shards WHERE name=?", (name,)).fetchone():
        return False
    try:
        rows = folder.read_results(name)
    except (OSError, ValueError) as exc:  # e.g. a foreign file in results/: say it, keep going
        tally.problems.append(f"result shard {name} could not be read: {exc}")
        return False
    with store.db:
        store.db.execute("BEGIN IMMEDIATE")
        if store.db.execute("SELECT 1 FROM ray_shards WHERE name=?", (name,)).fetchone():
            return False
        for row in rows:
            if row["store_id"] == store_id:
                _apply(store, row, run_id, tally)
        store.db.execute("INSERT INTO ray_shards(name, rows, ingested_at) VALUES (?,?,?)",
                         (name, len(rows), now_iso()))
    tally.shards += 1
    return True


def ingest_all(store: Store, folder: WorkFolder, run_id: int | None, store_id: str, tally: IngestTally) -> int:
    """Every shard in the folder not applied yet (at start: what a killed driver left behind)."""
    done = already_ingested(store)
    return sum(ingest_shard(store, folder, name, run_id, store_id, tally)
               for name in folder.result_names() if name not in done)


def _apply(store: Store, row: dict[str, Any], run_id: int | None, tally: IngestTally) -> None:
    job_id = int(row["job_id"])
    current = store.db.execute("SELECT status FROM jobs WHERE id=?", (job_id,)).fetchone()
    if current is None:
        return
    paid: float | None = 0.0
    for attempt in json.loads(row["attempt_log"] or "[]"):
        usage = attempt.pop("usage", None)
        credits = attempt.pop("credits", None)
        known = {k: v for k, v in attempt.items() if k in _LOG_FIELDS}  # a field a newer engine adds is kept out
        store.log_attempt(job_id, run_id, usage=Usage(**usage) if usage else None,
                          credits=tuple(credits) if credits else None, **known)
        tally.spent_usd += float(attempt.get("cost") or 0.0)
        if paid is not None:
            paid = None if attempt.get("cost") is None and usage else paid + float(attempt.get("cost") or 0.0)
    if row["fatal"] and tally.fatal is None:
        tally.fatal = row["fatal"]
    status = row["status"]
    if status not in SETTLED:
        if row["error_message"] and not row["fatal"]:
            tally.unsettled += 1
            tally.problems.append(f"{row['display']}: {row['error_message']} (left pending)")
        return
    if current["status"] == "ok":
        return  # answered before: never overwritten
    fields = json.loads(row["fields"]) if row["fields"] is not None else None
    # Store._settle is the same UPDATE the local engine's commit uses; called inside this shard's transaction.
    store._settle(job_id, status=status, mode="sync", fields=fields, error_type=row["error_type"],
                  error_message=row["error_message"], request_id=row["request_id"])
    if status == "ok":
        tally.ok += 1
    else:
        tally.failed += 1
    if tally.settled is not None:
        tally.settled.append((job_id, str(row["display"]), status, paid,
                              row["error_type"] if status == "failed" else None))
