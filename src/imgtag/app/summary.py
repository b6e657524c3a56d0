"""Read-only summaries of the store for `status`, the end-of-run report and exit codes."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from imgtag.events.payloads import dollars
from imgtag.store import WorkKey, tallies


@dataclass
class Summary:
    files: int = 0
    by_status: dict[str, int] = field(default_factory=dict)          # ok / failed / skipped / pending
    by_error: dict[str, int] = field(default_factory=dict)           # error type -> count (failed + skipped)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float | None = 0.0  # None: some tokens were paid at prices nobody knows
    requests: int = 0
    credits_spent: float | None = None       # credit-billed providers: sum over attempts (None: none recorded)
    credits_remaining: float | None = None   # the balance the latest answer reported


def summarize(db: sqlite3.Connection, key: WorkKey | None, *, run_id: int | None = None,
              since_run: int | None = None, counted: int | None = None) -> Summary:
    """Counts by status for the files one run touched (`run_id`: the end-of-run summary; tokens and cost are
    that run's), or the folder's file set (`since_run`, export/fileset.py: `status`; tokens and cost to date), or every
    file. `counted`, the up-front count of the inputs, adds the files a stopped run never reached as pending.

    Built for a million files (issue 20.3): files are counted from a covering index alone, and only the target's
    answered jobs are joined to the files holding their content (in content order, index to index), so no wide
    row is read; an ok file with no answered job is pending."""
    s = Summary()
    # One run's files have no summary: counted from their rows.
    files, answers = (tallies.counts(db, key, since_run) if run_id is None
                      else tallies.rows_counts(db, key, "f.last_run = ?", (run_id,)))
    ok_files = 0
    for (status, reason_code), count in sorted(files.items(), key=_nulls_first):
        s.files += count
        if status == "ok":
            ok_files += count
            continue
        # A row reserved at discovery and not examined yet (reason_code 'pending') is pending, as in results.*.
        shown = "pending" if reason_code == "pending" else status
        s.by_status[shown] = s.by_status.get(shown, 0) + count
        if reason_code and shown != "pending":
            s.by_error[reason_code] = s.by_error.get(reason_code, 0) + count
    answered = 0
    if ok_files:
        for (status, error_type), count in sorted(answers.items(), key=_nulls_first):
            answered += count
            s.by_status[status] = s.by_status.get(status, 0) + count
            if status == "failed" and error_type:
                s.by_error[error_type] = s.by_error.get(error_type, 0) + count
    if ok_files > answered:  # not asked yet, in flight or in a live batch
        s.by_status["pending"] = s.by_status.get("pending", 0) + ok_files - answered
    if counted is not None and counted > s.files:  # found by the count, never reached: still to do
        s.by_status["pending"] = s.by_status.get("pending", 0) + counted - s.files
        s.files = counted
    if key is not None:
        kp = (key.preset_version, key.provider, key.model)
        if run_id is None:  # to date: the target's attempts as the store keeps them summed
            spent = tallies.spend(db, key)
            row = (spent.input_tokens, spent.output_tokens, spent.cache_creation_input_tokens,
                   spent.cache_read_input_tokens, spent.cost_usd, spent.requests, spent.cost_unknown,
                   spent.credits_spent)
        else:
            row = _run_spend(db, kp, run_id)
        (s.input_tokens, s.output_tokens, s.cache_creation_input_tokens, s.cache_read_input_tokens,
         s.cost_usd, s.requests, unknown, s.credits_spent) = row
        if unknown:
            s.cost_usd = None
        s.credits_remaining = _credits_remaining(db, kp, run_id)
    return s


def _run_spend(db: sqlite3.Connection, kp: tuple[str, str, str], run_id: int) -> tuple[Any, ...]:
    """One run's attempts of this target summed (the end-of-run summary), in tally_spend's order."""
    # A folder of one target (the usual case) sums its attempts without looking each one's job up.
    of_target = ("" if only_target(db, kp) else
                 " AND a.job_id IN (SELECT id FROM jobs WHERE preset_version = ? AND provider = ? AND model = ?)")
    return tuple(db.execute(
        "SELECT COALESCE(SUM(a.input_tokens),0), COALESCE(SUM(a.output_tokens),0),"
        " COALESCE(SUM(a.cache_creation_input_tokens),0), COALESCE(SUM(a.cache_read_input_tokens),0),"
        # Requests, not images: the images of a pack (--images-per-request) share their answer's request id.
        # A batch item with no answer (canceled, expired, errored: not processed, not billed) is no request.
        " COALESCE(SUM(a.cost_usd),0), COUNT(DISTINCT CASE WHEN a.request_id IS NOT NULL THEN a.request_id"
        "   WHEN a.mode = 'batch' THEN NULL ELSE 'attempt ' || a.id END), SUM(a.cost_unknown),"
        " SUM(a.credits_amount) FROM attempts a WHERE a.run_id = ? /* scan: no index by run; once per run */"
        + of_target,
        (run_id, *(kp if of_target else ()))).fetchone())


def _nulls_first(item: tuple[tuple[str, str | None], int]) -> tuple[str, bool, str]:
    """The order SQL's GROUP BY gives (a NULL cause first), which the JSON's objects keep."""
    (status, cause), _ = item
    return status, cause is not None, cause or ""


def only_target(db: sqlite3.Connection, kp: tuple[str, str, str]) -> bool:
    """Whether every job in the store is this target's: the first and the last in the jobs_target index are."""
    order = "preset_version {0}, provider {0}, model {0}"
    return all(tuple(row) == kp for row in (
        db.execute(f"SELECT preset_version, provider, model FROM jobs ORDER BY {order.format(d)} LIMIT 1").fetchone()
        for d in ("ASC", "DESC")) if row is not None)


def _credits_remaining(db: sqlite3.Connection, kp: tuple[str, str, str], run_id: int | None) -> float | None:
    """Credit-billed providers: the balance left. Answers arrive concurrently, so the last one stored need not be the
    last one charged: the balance is the lowest reported in the latest run that reported one (a top-up between runs
    raises it again). Only credit-billed attempts are in the attempts_credits index."""
    run = " AND a.run_id = ?" if run_id is not None else ""
    params = (*kp, run_id) if run_id is not None else kp
    (latest,) = db.execute(
        "SELECT MIN(a.credits_remaining) FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE j.preset_version = ?"
        " AND j.provider = ? AND j.model = ?" + run + " AND a.credits_remaining IS NOT NULL AND a.run_id ="
        " (SELECT MAX(b.run_id) FROM attempts b WHERE b.credits_remaining IS NOT NULL)", params).fetchone()
    return latest


def finished_fields(summary: Summary, exit_code: int, *, elapsed_s: float, done_before: int,
                    message: str | None, interrupted: bool) -> dict[str, object]:
    """The `run_finished` event's fields (events/schema.json)."""
    return {"exit_code": exit_code, "interrupted": interrupted, "files": summary.files,
            "by_status": dict(summary.by_status), "by_error": dict(summary.by_error), "done_before": done_before,
            "requests": summary.requests, "input_tokens": summary.input_tokens,
            "output_tokens": summary.output_tokens, "cost_usd": dollars(summary.cost_usd),
            "elapsed_s": round(elapsed_s, 3), "message": message}
