"""Read-only summaries of the store for `status`, the end-of-run report and exit codes."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from imgtag.store import WorkKey


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
    that run's), or the folder's file set (`since_run`, fileset.py: `status`; tokens and cost to date), or every
    file. `counted`, the up-front count of the inputs, adds the files a stopped run never reached as pending."""
    where = "WHERE f.last_run = ?" if run_id is not None else "WHERE f.seen_run >= ?" if since_run is not None else ""
    params: tuple[object, ...] = (run_id,) if run_id is not None else ()
    files_params: tuple[object, ...] = params or ((since_run,) if since_run is not None else ())
    s = Summary()
    kp = (key.preset_version, key.provider, key.model) if key else ("", "", "")
    rows = db.execute(
        # A row reserved at discovery and not examined yet (reason_code 'pending') is pending, as in results.*.
        "SELECT CASE WHEN f.status <> 'ok' AND f.reason_code = 'pending' THEN 'pending'"
        "            WHEN f.status <> 'ok' THEN f.status"
        "            WHEN j.status IS NULL OR j.status IN ('pending', 'batched') THEN 'pending'"
        "            ELSE j.status END AS st,"
        " CASE WHEN f.status <> 'ok' AND f.reason_code = 'pending' THEN NULL WHEN f.status <> 'ok' THEN f.reason_code"
        " WHEN j.status = 'failed' THEN j.error_type END AS et,"
        " COUNT(*) FROM files f LEFT JOIN jobs j ON j.sha256 = f.sha256 AND f.status = 'ok'"
        " AND j.preset_version = ? AND j.provider = ? AND j.model = ? " + where + " GROUP BY st, et",
        (*kp, *files_params),
    ).fetchall()
    for status, error_type, count in rows:
        s.files += count
        s.by_status[status] = s.by_status.get(status, 0) + count
        if error_type:
            s.by_error[error_type] = s.by_error.get(error_type, 0) + count
    if counted is not None and counted > s.files:  # found by the count, never reached: still to do
        s.by_status["pending"] = s.by_status.get("pending", 0) + counted - s.files
        s.files = counted
    if key is not None:
        row = db.execute(
            "SELECT COALESCE(SUM(a.input_tokens),0), COALESCE(SUM(a.output_tokens),0),"
            " COALESCE(SUM(a.cache_creation_input_tokens),0), COALESCE(SUM(a.cache_read_input_tokens),0),"
            # Requests, not images: the images of a pack (--images-per-request) share their answer's request id.
            # A batch item with no answer (canceled, expired, errored: not processed, not billed) is no request.
            " COALESCE(SUM(a.cost_usd),0), COUNT(DISTINCT CASE WHEN a.request_id IS NOT NULL THEN a.request_id"
            "   WHEN a.mode = 'batch' THEN NULL ELSE 'attempt ' || a.id END), SUM(a.cost_unknown)"
            " FROM attempts a JOIN jobs j ON j.id = a.job_id"
            " WHERE j.preset_version = ? AND j.provider = ? AND j.model = ?"
            + (" AND a.run_id = ?" if run_id is not None else ""),
            (*kp, *params),
        ).fetchone()
        (s.input_tokens, s.output_tokens, s.cache_creation_input_tokens, s.cache_read_input_tokens,
         s.cost_usd, s.requests, unknown) = row
        if unknown:
            s.cost_usd = None
        s.credits_spent, s.credits_remaining = _credits(db, kp, run_id)
    return s



def _credits(db: sqlite3.Connection, kp: tuple[str, str, str], run_id: int | None) -> tuple[float | None, float | None]:
    run = " AND a.run_id = ?" if run_id is not None else ""
    params = (*kp, run_id) if run_id is not None else kp
    base = (" FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE j.preset_version = ? AND j.provider = ?"
            " AND j.model = ?" + run)
    (spent,) = db.execute("SELECT SUM(a.credits_amount)" + base, params).fetchone()
    # Answers arrive concurrently, so the last one stored need not be the last one charged: the balance is
    # the lowest reported in the latest run that reported one (a top-up between runs raises it again).
    (latest,) = db.execute(
        "SELECT MIN(a.credits_remaining)" + base + " AND a.credits_remaining IS NOT NULL AND a.run_id ="
        " (SELECT MAX(b.run_id) FROM attempts b WHERE b.credits_remaining IS NOT NULL)", params).fetchone()
    return spent, latest
