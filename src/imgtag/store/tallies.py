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


def counts(db: sqlite3.Connection, key: WorkKey | None,
           since_run: int | None) -> tuple[FileCounts, AnswerCounts] | None:
    """Files by status and cause, and the target's answers to ok files (ok, failed) by error type, in the file set
    (`since_run`) or among every file (None). None when the set is the smaller part of the store: count it from
    its rows (`rows_counts`)."""
    files: FileCounts = Counter({(status, reason or None): n for status, reason, n in db.execute(
        "SELECT status, reason_code, n FROM tally_files WHERE n <> 0")})
    answers: AnswerCounts = Counter()
    if key is not None:
        answers.update({(status, error or None): n for status, error, n in db.execute(
            "SELECT status, error_type, n FROM tally_answers WHERE preset_version = ? AND provider = ? AND model = ?"
            " AND n <> 0", _kp(key))})
    if since_run is not None:
        (outside,) = db.execute(f"SELECT COUNT(*) FROM files f WHERE {OUTSIDE_SET}", (since_run,)).fetchone()
        if outside:
            if 2 * outside > sum(files.values()):
                return None
            out_files, out_answers = rows_counts(db, key, OUTSIDE_SET, (since_run,), files_first=True)
            files.subtract(out_files)
            answers.subtract(out_answers)
    return +files, +answers  # unary plus drops the groups that are now empty, as a GROUP BY never shows them


# The files outside the set of run R (seen_run < R, or never seen by a real run): two ranges of files_seen_run.
OUTSIDE_SET = "(f.seen_run < ? OR f.seen_run IS NULL)"


def rows_counts(db: sqlite3.Connection, key: WorkKey | None, scope: str, params: tuple[object, ...], *,
                files_first: bool = False) -> tuple[FileCounts, AnswerCounts]:
    """`counts` from the rows, for the files matching `scope` (SQL on files `f`). files_first: the scope is a few
    files (those outside the set), so each is looked up in the jobs instead of the target's every job in the files.

    Files are counted from a covering index alone, and (for a large scope) only the target's answered jobs are
    joined to the files holding their content, in content order, index to index; no wide row is read."""
    files: FileCounts = Counter()
    for status, reason_code, n in db.execute(
            f"SELECT f.status, f.reason_code, COUNT(*) FROM files f WHERE {scope} GROUP BY f.status, f.reason_code",
            params):
        files[(status, reason_code)] += n
    answers: AnswerCounts = Counter()
    if key is None or not any(n for (status, _), n in files.items() if status == "ok"):
        return files, answers
    if files_first:
        join = (f"FROM files f CROSS JOIN jobs j ON j.sha256 = f.sha256 AND j.preset_version = ? AND j.provider = ?"
                f" AND j.model = ? WHERE f.status = 'ok' AND {scope}")
        args = (*_kp(key), *params)
    else:
        join = ("FROM jobs j JOIN files f ON f.sha256 = j.sha256 AND f.status = 'ok' AND " + scope
                + " WHERE j.preset_version = ? AND j.provider = ? AND j.model = ?")
        args = (*params, *_kp(key))
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
    return files, answers


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
        "tally_files": db.execute("SELECT status, COALESCE(reason_code, ''), COUNT(*) FROM files"
                                  " GROUP BY 1, 2 ORDER BY 1, 2").fetchall(),
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
        "tally_sizes": db.execute(
            "SELECT preset_version, provider, model, size, COUNT(*) FROM (SELECT j.preset_version, j.provider,"
            f" j.model, (SELECT width * {SIZE_PACK} + height FROM files WHERE sha256 = j.sha256 AND width IS NOT NULL"
            " LIMIT 1) AS size FROM jobs j) WHERE size IS NOT NULL GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4").fetchall(),
    })


def kept(db: sqlite3.Connection) -> dict[str, list[tuple[object, ...]]]:
    """The summaries as kept (groups that went back to zero left out), in `recount`'s shape."""
    return _tuples({
        "tally_files": db.execute("SELECT status, reason_code, n FROM tally_files WHERE n <> 0"
                                  " ORDER BY 1, 2").fetchall(),
        "tally_answers": db.execute("SELECT * FROM tally_answers WHERE n <> 0 ORDER BY 1, 2, 3, 4, 5").fetchall(),
        "tally_spend": db.execute(
            "SELECT preset_version, provider, model, attempts, requests, input_tokens, output_tokens,"
            " cache_creation_input_tokens, cache_read_input_tokens, ROUND(cost_usd, 9), cost_unknown,"
            " ROUND(credits_amount, 9), credits_counted FROM tally_spend WHERE attempts <> 0"
            " ORDER BY 1, 2, 3").fetchall(),
        "tally_sizes": db.execute("SELECT * FROM tally_sizes WHERE n <> 0 ORDER BY 1, 2, 3, 4").fetchall(),
    })


def _tuples(tables: dict[str, list[Any]]) -> dict[str, list[tuple[object, ...]]]:
    return {name: [tuple(row) for row in rows] for name, rows in tables.items()}
