"""How each run ended, in the `runs` table: finished, interrupted (Ctrl-C / SIGTERM) or killed.

A run that was killed (kill -9, power loss) cannot say so itself; the next process that takes the folder's
writer lock finds its row unfinished and marks it. Holding the lock proves its process is gone (the lock
dies with its process), so pid reuse cannot make a dead run look alive.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

FINISHED, INTERRUPTED, KILLED = "finished", "interrupted", "killed"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def mark_abandoned_runs(db: sqlite3.Connection) -> int:
    """Call while holding the writer lock, before starting a run: unfinished runs are dead runs."""
    cur = db.execute("UPDATE runs SET end_state=?, finished_at=? WHERE finished_at IS NULL AND end_state IS NULL",
                     (KILLED, _now()))
    return cur.rowcount


def mark_interrupted(db: sqlite3.Connection, run_id: int, exit_code: int) -> None:
    db.execute("UPDATE runs SET end_state=?, finished_at=?, exit_code=? WHERE id=? AND finished_at IS NULL",
               (INTERRUPTED, _now(), exit_code, run_id))
