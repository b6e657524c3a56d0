"""Every statement `run`, `status`, `export`, `retry` and `review` send to the store has the index it needs
(issue 20 item 3): a store of 20,000 synthetic images (tests/synthstore.py), the real commands run over it with
every connection's statements captured (sqlite3's trace callback), then EXPLAIN QUERY PLAN of each. A full pass
over files, jobs or attempts (SCAN, or SCAN ... USING INDEX, which reads every row through an index) fails,
unless the statement says why in a `/* scan: ... */` comment (the results export is every file, in order).

The statements come from the code as it runs, so a new query is held to this the day it is written. imgtag does
not run ANALYZE, so neither does this test: the plans are the ones users get.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imagegen import make_images, run_cli
from imgtag.app.retry_plan import retry_plan
from imgtag.review.service import Review
from imgtag.store import Store
from synthstore import fill

IMAGES = 20_000
WATCHED = ("files", "jobs", "attempts")  # the tables that grow with the images (review tables: with the edits)
SCAN = re.compile(r"^SCAN (\w+)(?: USING (?:INDEX|PRIMARY KEY)\b.*)?$")


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement any imgtag connection executes from now on (parameters bound in)."""
    statements: list[str] = []
    real = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db = real(*args, **kwargs)
        db.set_trace_callback(statements.append)
        return db

    monkeypatch.setattr(sqlite3, "connect", connect)
    yield statements


def _aliases(sql: str) -> dict[str, str]:
    """alias (or bare name) -> table, for the tables this test watches."""
    found = {t: t for t in WATCHED}
    for table, alias in re.findall(r"\b(files|jobs|attempts)\s+(?:AS\s+)?(\w+)", sql, flags=re.IGNORECASE):
        if alias.upper() not in {"WHERE", "ON", "JOIN", "LEFT", "CROSS", "INNER", "SET", "GROUP", "ORDER", "USING",
                                 "LIMIT", "UNION", "VALUES", "AND"}:
            found[alias] = table.lower()
    return found


def full_passes(db: sqlite3.Connection, sql: str) -> list[str]:
    """The plan lines of this statement that read every row of a watched table."""
    aliases = _aliases(sql)
    bad = []
    for row in db.execute("EXPLAIN QUERY PLAN " + sql):
        line = row[3]
        match = SCAN.match(line)
        if match and "COVERING INDEX" not in line and aliases.get(match.group(1)) in WATCHED:
            bad.append(line)
    return bad


def test_the_commands_statements_use_indexes(tmp_path: Path, fake_anthropic: Any, monkeypatch: pytest.MonkeyPatch,
                                             captured: list[str]) -> None:
    out = tmp_path / "out"
    fill(out, IMAGES, root=str(tmp_path / "catalogue"))
    # Some review state to read: an approval, an edit, a queued retry (the page's own writes).
    with Store(out, lock=False, create=False) as store:
        review = Review(store.db, store.get_meta("target"))
        review.patch(10, {"fields": {"color": "green"}, "reviewed": True})
        review.queue_retry(11)
        captured.clear()
        for filters in ({}, {"status": "failed"}, {"q": "number 42"}, {"tag": "tag17"}, {"reviewed": "true"},
                        {"edited": "true"}, {"near_duplicates": "true"}, {"queued": "true"}, {"rejected": "false"},
                        {"sort": "updated"}, {"sort": "path"}, {"offset": 5000}):
            review.list({**filters, "limit": 60})
        review.item(12)
        review.tags()
        review.history(10)
        review.bulk({"op": "rename_tag", "field": "tags", "from": "tag3", "to": "tagX", "filter": {"tag": "tag3"},
                     "dry_run": True})
    for args in (["status"], ["status", "--json"], ["export", "--format", "csv,jsonl,xlsx,parquet"],
                 ["export", "--all"], ["export", "--reviewed-only"]):
        code, output = run_cli([*args, "--out", str(out)], {}, monkeypatch)
        assert code == 0, output
    plan = retry_plan(out, progress=False)
    assert plan.count > 0  # the store's failures were found (by index)
    # A real run into the same store: discovery, the unchanged-file check, the writes of new files and answers,
    # the end-of-run summary and the rebuilt results.
    make_images(tmp_path / "more", 3)
    code, output = run_cli(["run", str(tmp_path / "more"), "--out", str(out), "--preset", "ecommerce", "-q"],
                           fake_anthropic.env(), monkeypatch)
    assert code == 0, output
    code, output = run_cli(["run", str(tmp_path / "more"), "--out", str(out), "--preset", "ecommerce", "-q"],
                           fake_anthropic.env(), monkeypatch)  # the rerun: every file unchanged
    assert code == 0, output

    statements = dict.fromkeys(s.strip() for s in captured
                               if s.strip().split(None, 1)[0].upper() in ("SELECT", "WITH", "UPDATE", "DELETE",
                                                                          "INSERT", "/*"))
    assert len(statements) > 40, "the capture missed the commands' statements"
    db = sqlite3.connect(out / "imgtag.db")
    try:
        failing = {}
        for sql in statements:
            if "/* scan:" in sql:
                continue
            if bad := full_passes(db, sql):
                failing[sql[:400]] = bad
    finally:
        db.close()
    assert not failing, "statements that read every row:\n" + "\n".join(f"{s}\n  {b}" for s, b in failing.items())


def test_the_check_catches_a_full_pass(tmp_path: Path) -> None:
    """The check itself: a query by a column no index leads with is a full pass; by the path it is not."""
    fill(tmp_path / "out", 100, root=str(tmp_path / "catalogue"))
    db = sqlite3.connect(tmp_path / "out" / "imgtag.db")
    try:
        assert full_passes(db, "SELECT id FROM files f WHERE f.display = 'x'") == ["SCAN f"]
        assert full_passes(db, "SELECT COUNT(*) FROM jobs WHERE fields LIKE '%red%'") == ["SCAN jobs"]
        assert full_passes(db, "SELECT id FROM files WHERE path = x'00'") == []
        assert full_passes(db, "SELECT status, COUNT(*) FROM files WHERE status = 'ok'") == []  # covering index
    finally:
        db.close()
