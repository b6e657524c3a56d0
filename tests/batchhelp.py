"""Helpers shared by the batch-mode tests (Message Batches, OpenAI's Batch API, the provider-neutral toy): reading
an output folder's store and checking its results."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from imagegen import close_to, read_jsonl


def query(out: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of one SQL query on the output folder's store (a connection of its own, closed after)."""
    db = sqlite3.connect(out / "imgtag.db")
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def assert_all_ok_and_own_colour(out: Path, made: dict[str, tuple[int, int, int]], **expected: Any) -> None:
    """Every image made has one ok row describing its own colour; `expected`: columns every row must hold
    (e.g. mode="batch")."""
    rows = read_jsonl(out / "results.jsonl")
    assert len(rows) == len(made)
    for row in rows:
        assert row["status"] == "ok", row
        assert {k: row[k] for k in expected} == expected, row
        assert close_to(row["fields"]["color"], made[row["path"]]), (row["path"], row["fields"])
