"""`imgtag retry`: the last run's target, applied to recorded failures that asking again can fix.

Failure classes (README "Retry"):
- retried: transient faults that ran out of attempts (timeouts, dropped connections, 5xx/529, rate limits), an
  answer that failed validation fewer than PERSISTENT_INVALID_ASKS times (answers vary between asks), a folder
  or file that could not be read (permissions change), any cause not listed below, and any file changed since.
- not retried without --all: permanent input failures of an unchanged file (empty, not an image, unsupported,
  truncated, corrupt, decompression bomb) and answers that would fail the same way again (refused, truncated
  even at twice max_tokens, the API rejected the request as invalid or too large, an answer that failed
  validation on PERSISTENT_INVALID_ASKS asks, or once from a provider whose answer a new ask would not change:
  Provider.reask_invalid False). Such answers keep their text in the store (`status`, the results).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgtag.config.runconfig import RunConfig
from imgtag.export import fileset
from imgtag.ingest.discover import Discovered
from imgtag.store import Store

PERMANENT_INPUT = frozenset({"empty", "not_image", "unsupported", "truncated", "corrupt", "bomb", "not_regular"})
WILL_FAIL_AGAIN = frozenset({"refused", "truncated", "invalid_request_error", "request_too_large",
                             "not_found_error"})
PERSISTENT_INVALID_ASKS = 4


@dataclass
class RetryPlan:
    cfg: RunConfig | None
    retrying: Counter[str] = field(default_factory=Counter)     # cause -> images retried
    left_out: Counter[str] = field(default_factory=Counter)     # cause -> images not retried (need --all)
    # cause -> retried files the estimate leaves out: unchanged files that could not be decoded fail the same way
    # again in decoding, before any request (retry --all still tries them: a newer decoder may read them)
    undecodable: Counter[str] = field(default_factory=Counter)
    visual_tokens: list[int] = field(default_factory=list)      # per image to price (0: not decoded yet)
    sent_sizes: list[tuple[int | None, int | None]] = field(default_factory=list)  # as sent (None: not yet)

    @property
    def count(self) -> int:
        return sum(self.retrying.values())


def _unchanged(path: str, size: int | None, mtime_ns: int | None) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return True  # gone or unreadable: asking again cannot help either
    return (st.st_size, st.st_mtime_ns) == (size, mtime_ns)


def _classify(row: Any, invalid_asks: int, force: bool, persistent_invalid: int = PERSISTENT_INVALID_ASKS) -> bool:
    """Whether this failure is retried."""
    if force:
        return True
    cause = row["cause"] or "error"
    if row["fstatus"] == "failed":
        return cause not in PERMANENT_INPUT or not _unchanged(os.fsdecode(row["path"]), row["size"],
                                                              row["mtime_ns"])
    if cause in WILL_FAIL_AGAIN:
        return False
    return not (cause == "invalid_output" and invalid_asks >= persistent_invalid)


QUEUED = "queued in review"


def _reopen_queued(store: Store, key: tuple[str, str, str], rows: list[Any]) -> None:
    """Queued images are asked again: an answered job goes back to pending (its answer is kept in answer_history
    when the new one lands, and a person's edits stay current), and the queue is emptied for them."""
    from imgtag.store.db import WorkKey
    from imgtag.store.review import clear_retries

    with store.db:
        store.db.execute("BEGIN IMMEDIATE")
        for r in rows:
            if r["job_id"] is not None and r["jstatus"] == "ok":
                store.set_job_status(int(r["job_id"]), "pending")
        clear_retries(store.db, WorkKey(*key), [int(r["file_id"]) for r in rows])


def retry_plan(out: Path, *, progress: bool = True, force: bool = False, look_only: bool = False) -> RetryPlan:
    """The failures of the latest target, split into what is retried and what is not (all with `force`).
    `look_only` changes nothing in the store (images queued from the review page stay queued): for saying what a
    retry would do, not doing it."""
    with Store(out, create=False) as store:
        meta = store.get_meta("target")
        if not meta:
            return RetryPlan(None)
        key = (meta["preset_version"], meta["provider"], meta["model"])
        # The failures `status` shows: those of the latest run's inputs (export/fileset.py).
        file_set = fileset.current(store)
        in_set, since = (" AND seen_run >= ?", (file_set.run,)) if file_set else ("", ())
        # Images queued from the review page ("retry this image") are asked again whatever their state.
        queued = ("EXISTS (SELECT 1 FROM review_retry q WHERE q.file_id = f.id AND q.preset_version = ?"
                  " AND q.provider = ? AND q.model = ?)")
        # The failures are found by index (failed files; the target's failed jobs, then the files holding their
        # content; the queue), never by reading every file: a store of a million images has few failures.
        chosen = ("SELECT id FROM files WHERE status = 'failed'" + in_set
                  + " UNION SELECT g.id FROM jobs i JOIN files g ON g.sha256 = i.sha256 AND g.status = 'ok'"
                  + in_set.replace("seen_run", "g.seen_run") + " WHERE i.preset_version = ? AND i.provider = ?"
                  " AND i.model = ? AND i.status = 'failed'"
                  " UNION SELECT file_id FROM review_retry WHERE preset_version = ? AND provider = ? AND model = ?")
        rows = store.db.execute(
            "SELECT f.id AS file_id, f.path, f.display, f.root, f.size, f.mtime_ns, f.status AS fstatus,"
            " f.visual_tokens, f.out_width, f.out_height, j.status AS jstatus, " + queued + " AS queued,"
            " j.id AS job_id, CASE WHEN f.status = 'failed' THEN f.reason_code ELSE j.error_type END AS cause"
            " FROM files f LEFT JOIN jobs j ON j.sha256 = f.sha256 AND j.preset_version = ? AND j.provider = ?"
            f" AND j.model = ? WHERE f.id IN ({chosen}) ORDER BY f.id",
            (*key, *key, *since, *since, *key, *key)).fetchall()
        if not look_only:
            _reopen_queued(store, key, [r for r in rows if r["queued"]])
        invalid_asks = dict(store.db.execute(
            "SELECT a.job_id, COUNT(*) FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE j.status = 'failed'"
            " AND a.error_type = 'invalid_output' AND j.preset_version = ? AND j.provider = ? AND j.model = ?"
            " GROUP BY a.job_id", key).fetchall())
    plan = RetryPlan(None)
    source: list[Discovered] = []
    persistent_invalid = PERSISTENT_INVALID_ASKS if _reask_changes_answers(meta["provider"]) else 1
    for r in rows:
        cause = QUEUED if r["queued"] else r["cause"] or "error"
        asks = invalid_asks.get(r["job_id"], 0)
        if not r["queued"] and not _classify(r, asks, force, persistent_invalid):
            label = f"{cause} (asked {asks} times)" if cause == "invalid_output" else cause
            plan.left_out[label] += 1
            continue
        plan.retrying[cause] += 1
        if r["fstatus"] == "failed" and cause in PERMANENT_INPUT and _unchanged(os.fsdecode(r["path"]), r["size"],
                                                                                r["mtime_ns"]):
            plan.undecodable[cause] += 1
        else:
            plan.visual_tokens.append(int(r["visual_tokens"] or 0) if r["fstatus"] == "ok" else 0)
            plan.sent_sizes.append((r["out_width"], r["out_height"]) if r["fstatus"] == "ok" else (None, None))
        source.append(Discovered(path=os.fsdecode(r["path"]), display=r["display"], root=r["root"], size=r["size"],
                                 mtime_ns=r["mtime_ns"]))
    if source:
        plan.cfg = RunConfig(inputs=[], out=out, preset=meta["preset"], lang=meta.get("lang"),
                             categories=meta.get("categories"), provider=meta["provider"], model=meta["model"],
                             mode=meta.get("mode") or "sync", formats=meta.get("formats") or "csv,jsonl",
                             retry_failed=True, progress=progress, source=source, detail=meta.get("detail"),
                             max_edge=meta.get("max_edge"),
                             provider_settings={"base_url": meta["base_url"]} if meta.get("base_url") else {},
                             export_options=dict(meta.get("export_options") or {}))
    return plan


def _reask_changes_answers(provider: str) -> bool:
    """False for a provider whose answer to the same image would be the same (Provider.reask_invalid)."""
    from imgtag.providers import provider_class
    from imgtag.providers.base import ConfigError

    try:
        return provider_class(provider).reask_invalid
    except ConfigError:  # a plugin no longer installed: retry as for any provider
        return True


def estimated_cost(plan: RetryPlan, target: Any, *, batch: bool) -> float | None:
    """What asking these images again should cost (images not decoded yet count at the average size; files that
    cannot be decoded, `plan.undecodable`, cost nothing: they never reach a request)."""
    from imgtag.pricing.costs import cost_usd
    from imgtag.pricing.estimate import estimate_request, reserve_tokens

    if target.model.prices is None:
        return None
    known = [t for t in plan.visual_tokens if t > 0]
    average = sum(known) // len(known) if known else 1600
    total = 0.0
    for tokens, (width, height) in zip(plan.visual_tokens, plan.sent_sizes, strict=True):
        # The model's own image rule (an upper bound where it is unknown), as the budget reserves it.
        est = estimate_request(reserve_tokens(tokens or average, width, height, target.model), target.preset,
                               target.model)
        total += cost_usd(target.model.prices, est.usage(), batch=batch) or 0.0
    return total


def retry_config(out: Path, *, progress: bool = True) -> RunConfig | None:
    """Kept for callers of the earlier API: the retryable failures' RunConfig, or None."""
    return retry_plan(out, progress=progress).cfg
