"""What `imgtag status` counts, read from the summaries the store keeps as its rows change (migration
`_v17_status_tallies`: tables `tally_*`, kept by triggers in the same transaction as every write), so that status
answers in well under a second at a million images instead of joining a million jobs to their files per call.

The summaries cover every file. `status` covers the folder's file set (fileset.py: the files with seen_run >= the
latest run's), which a rerun moves for every file in one bulk update that no trigger watches (a trigger per file
would slow the rerun). So the set's counts are the summaries minus the files outside the set, counted from their
rows (`files_seen_run` finds them; usually none or a few). When most files are outside the set (a folder that
shrank to a part of what the store holds), the set itself is the smaller count and is counted from its rows.

`recount` computes every summary from the rows; tests/test_tallies.py holds the two equal after every kind of write.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass
from typing import Any

from imgtag.store.db import WorkKey

# (status, reason_code) of files; (job status, error type) of the answers to ok files. NULL is None in both.
FileCounts = Counter[tuple[str, str | None]]
AnswerCounts = Counter[tuple[str, str | None]]

SIZE_PACK = 1 << 32  # a size as one integer: width * SIZE_PACK + height (as tally_sizes keeps it)
ANSWERED = ("ok", "failed")


@dataclass(frozen=True)
class Spend:
    """A target's attempts summed, in the types SQL's SUM gives (0 and None when it has no attempt)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float = 0
    requests: int = 0
    cost_unknown: int | None = None
    credits_spent: float | None = None


def _kp(key: WorkKey) -> tuple[str, str, str]:
    return (key.preset_version, key.provider, key.model)


def counts(db: sqlite3.Connection, key: WorkKey | None, since_run: int | None) -> tuple[FileCounts, AnswerCounts]:
    """Files by status and cause, and the target's answers to ok files (ok, failed) by error type, in the file set
    (`since_run`) or among every file (None). Files are counted from files_set, index only; the answers are the
    summary less the files outside the set, or (when those are most of the store) counted from the set's rows."""
    scope, params = ("f.seen_run >= ?", (since_run,)) if since_run is not None else ("1", ())
    files = file_counts(db, scope, params)
    if key is None or not any(n for (status, _), n in files.items() if status == "ok"):
        return files, Counter()
    answers: AnswerCounts = Counter({(status, error or None): n for status, error, n in db.execute(
        "SELECT status, error_type, n FROM tally_answers WHERE preset_version = ? AND provider = ? AND model = ?"
        " AND n <> 0", _kp(key))})
    if since_run is not None:
        outside = _outside(db, since_run)
        if outside is None:
            return files, answer_rows(db, key, scope, params)
        if outside:
            answers.subtract(answer_rows(db, key, OUTSIDE_SET, (since_run,), outside=True))
    return files, +answers  # unary plus drops the groups that are now empty, as a GROUP BY never shows them


def _outside(db: sqlite3.Connection, since_run: int) -> int | None:
    """How many files are outside the set (counted by files_seen_run); None when they are more than half of the
    store, so the set is the smaller part to count from its rows."""
    (outside,) = db.execute(f"SELECT COUNT(*) FROM files f WHERE {OUTSIDE_SET}", (since_run,)).fetchone()
    if not outside:
        return 0
    (every,) = db.execute("SELECT COUNT(*) FROM files").fetchone()  # a count of b-tree pages' cells, not of rows
    return None if 2 * outside > every else int(outside)


def reviews(db: sqlite3.Connection, key: WorkKey, since_run: int | None) -> tuple[int, int, int] | None:
    """Approved, rejected and edited images among the target's answered (ok) ones, in the file set (`since_run`) or
    among every file; None when the set is the smaller part of the store (count it from its rows)."""
    kept: Counter[tuple[int, int]] = Counter({(reviewed, edited): n for reviewed, edited, n in db.execute(
        "SELECT reviewed, edited, n FROM tally_review WHERE preset_version = ? AND provider = ? AND model = ?"
        " AND n <> 0", _kp(key))})
    if since_run is not None:
        outside = _outside(db, since_run)
        if outside is None:
            return None
        if outside:
            kept.subtract({(reviewed, edited): n for reviewed, edited, n in db.execute(
                "SELECT r.reviewed, r.edits <> '{}', COUNT(*) FROM files f INDEXED BY files_seen_run"
                " CROSS JOIN review_state r ON r.file_id = f.id AND r.preset_version = ? AND r.provider = ?"
                " AND r.model = ? CROSS JOIN jobs j ON j.sha256 = f.sha256 AND j.preset_version = r.preset_version"
                " AND j.provider = r.provider AND j.model = r.model AND j.status = 'ok'"
                f" WHERE f.status = 'ok' AND {OUTSIDE_SET} GROUP BY 1, 2", (*_kp(key), since_run))})
    return (sum(n for (reviewed, _), n in kept.items() if reviewed == 1),
            sum(n for (reviewed, _), n in kept.items() if reviewed == -1),
            sum(n for (_, edited), n in kept.items() if edited))


# The files outside the set of run R (seen_run < R, or never seen by a real run): two ranges of files_seen_run,
# which answer_rows(outside=True) names (else the planner, without statistics, reads every file of files_set).
OUTSIDE_SET = "(f.seen_run < ? OR f.seen_run IS NULL)"


def rows_counts(db: sqlite3.Connection, key: WorkKey | None, scope: str,
                params: tuple[object, ...]) -> tuple[FileCounts, AnswerCounts]:
    """`counts` from the rows, for the files matching `scope` (SQL on files `f`): one run's files (the end-of-run
    summary), or a recount."""
    files = file_counts(db, scope, params)
    if key is None or not any(n for (status, _), n in files.items() if status == "ok"):
        return files, Counter()
    return files, answer_rows(db, key, scope, params)


def file_counts(db: sqlite3.Connection, scope: str, params: tuple[object, ...]) -> FileCounts:
    """Files matching `scope` by status and cause, from a covering index (files_set, files_run) alone."""
    files: FileCounts = Counter()
    for status, reason_code, n in db.execute(
            f"SELECT f.status, f.reason_code, COUNT(*) FROM files f WHERE {scope} GROUP BY f.status, f.reason_code",
            params):
        files[(status, reason_code)] += n
    return files


def answer_rows(db: sqlite3.Connection, key: WorkKey, scope: str, params: tuple[object, ...], *,
                outside: bool = False) -> AnswerCounts:
    """The target's answers to the ok files matching `scope`, from the rows: only the target's answered jobs are
    joined to the files holding their content, in content order, index to index (no wide row is read). outside: the
    scope is OUTSIDE_SET, a few files found by files_seen_run, each looked up in the target's jobs instead."""
    if outside:
        join = ("FROM files f INDEXED BY files_seen_run CROSS JOIN jobs j ON j.sha256 = f.sha256"
                f" AND j.preset_version = ? AND j.provider = ? AND j.model = ? WHERE f.status = 'ok' AND {scope}")
        args = (*_kp(key), *params)
    else:
        join = ("FROM jobs j JOIN files f ON f.sha256 = j.sha256 AND f.status = 'ok' AND " + scope
                + " WHERE j.preset_version = ? AND j.provider = ? AND j.model = ?")
        args = (*params, *_kp(key))
    answers: AnswerCounts = Counter()
    # Grouped by status alone, the index order (jobs_target) is the group order: no sort of a million rows; only
    # the failed (a few) are grouped by cause.
    for status, n in db.execute(f"SELECT j.status, COUNT(*) {join} AND j.status IN ('ok', 'failed')"
                                " GROUP BY j.status", args):
        if status == "ok":
            answers[("ok", None)] += n
        elif n:
            for error_type, m in db.execute(f"SELECT j.error_type, COUNT(*) {join} AND j.status = 'failed'"
                                            " GROUP BY j.error_type", args):
                answers[("failed", error_type)] += m
    return answers


def spend(db: sqlite3.Connection, key: WorkKey) -> Spend:
    """The target's attempts to date: tokens, dollars (cost_unknown: how many were paid at prices nobody knows),
    requests, credits."""
    row = db.execute(
        "SELECT input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost_usd, requests,"
        " cost_unknown, credits_amount, credits_counted FROM tally_spend WHERE preset_version = ? AND provider = ?"
        " AND model = ? AND attempts > 0", _kp(key)).fetchone()
    if row is None:
        return Spend()
    return Spend(input_tokens=row[0], output_tokens=row[1], cache_creation_input_tokens=row[2],
                 cache_read_input_tokens=row[3], cost_usd=row[4], requests=row[5], cost_unknown=row[6],
                 credits_spent=row[7] if row[8] else None)


def sizes(db: sqlite3.Connection, key: WorkKey) -> list[tuple[int, int, int]]:
    """The target's jobs by their content's pixel size: (width, height, jobs), smallest size first."""
    return [(*divmod(int(size), SIZE_PACK), int(n)) for size, n in db.execute(
        "SELECT size, n FROM tally_sizes WHERE preset_version = ? AND provider = ? AND model = ? AND n > 0"
        " ORDER BY size", _kp(key))]


def recount(db: sqlite3.Connection) -> dict[str, list[tuple[object, ...]]]:
    """Every summary computed from the rows, in the shape `kept` reads them: what the triggers must always equal."""
    return _tuples({
        "tally_answers": db.execute(
            "SELECT j.preset_version, j.provider, j.model, j.status, COALESCE(j.error_type, ''), COUNT(*) FROM jobs j"
            " JOIN files f ON f.sha256 = j.sha256 AND f.status = 'ok' WHERE j.status IN ('ok', 'failed')"
            " GROUP BY 1, 2, 3, 4, 5"
            " ORDER BY 1, 2, 3, 4, 5").fetchall(),
        "tally_spend": db.execute(
            "SELECT j.preset_version, j.provider, j.model, COUNT(*), COUNT(DISTINCT CASE WHEN a.request_id IS NOT NULL"
            " THEN a.request_id WHEN a.mode = 'batch' THEN NULL ELSE 'attempt ' || a.id END), SUM(a.input_tokens),"
            " SUM(a.output_tokens), SUM(a.cache_creation_input_tokens), SUM(a.cache_read_input_tokens),"
            " ROUND(TOTAL(a.cost_usd), 9), SUM(a.cost_unknown), ROUND(TOTAL(a.credits_amount), 9),"
            " COUNT(a.credits_amount) FROM attempts a JOIN jobs j ON j.id = a.job_id GROUP BY 1, 2, 3"
            " ORDER BY 1, 2, 3").fetchall(),
        "tally_review": db.execute(
            "SELECT r.preset_version, r.provider, r.model, r.reviewed, r.edits <> '{}', COUNT(*) FROM review_state r"
            " JOIN files f ON f.id = r.file_id AND f.status = 'ok' JOIN jobs j ON j.sha256 = f.sha256"
            " AND j.preset_version = r.preset_version AND j.provider = r.provider AND j.model = r.model"
            " AND j.status = 'ok' GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5").fetchall(),
        "tally_sizes": db.execute(
            "SELECT preset_version, provider, model, size, COUNT(*) FROM (SELECT j.preset_version, j.provider,"
            f" j.model, (SELECT width * {SIZE_PACK} + height FROM files WHERE sha256 = j.sha256 AND width IS NOT NULL"
            " LIMIT 1) AS size FROM jobs j) WHERE size IS NOT NULL GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4").fetchall(),
    })


def kept(db: sqlite3.Connection) -> dict[str, list[tuple[object, ...]]]:
    """The summaries as kept (groups that went back to zero left out), in `recount`'s shape."""
    return _tuples({
        "tally_answers": db.execute("SELECT * FROM tally_answers WHERE n <> 0 ORDER BY 1, 2, 3, 4, 5").fetchall(),
        "tally_spend": db.execute(
            "SELECT preset_version, provider, model, attempts, requests, input_tokens, output_tokens,"
            " cache_creation_input_tokens, cache_read_input_tokens, ROUND(cost_usd, 9), cost_unknown,"
            " ROUND(credits_amount, 9), credits_counted FROM tally_spend WHERE attempts <> 0"
            " ORDER BY 1, 2, 3").fetchall(),
        "tally_review": db.execute("SELECT * FROM tally_review WHERE n <> 0 ORDER BY 1, 2, 3, 4, 5").fetchall(),
        "tally_sizes": db.execute("SELECT * FROM tally_sizes WHERE n <> 0 ORDER BY 1, 2, 3, 4").fetchall(),
    })


def _tuples(tables: dict[str, list[Any]]) -> dict[str, list[tuple[object, ...]]]:
    return {name: [tuple(row) for row in rows] for name, rows in tables.items()}
