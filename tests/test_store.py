"""The store: migrations, the single-writer lock, crash-safe commits, result rows."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys

import pytest

from imgtag.pricing.costs import Usage
from imgtag.store import FileRecord, Store, StoreBusyError, WorkKey
from imgtag.store.migrations import MIGRATIONS

KEY = WorkKey("v1", "anthropic", "claude-haiku-5-5")


def test_schema_is_versioned_and_migrations_are_idempotent(tmp_path):
    with Store(tmp_path) as store:
        (version,) = store.db.execute("PRAGMA user_version").fetchone()
        assert version == len(MIGRATIONS)
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with Store(tmp_path) as store:  # reopening runs nothing twice
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_newer_schema_is_refused(tmp_path):
    with Store(tmp_path) as store:
        store.db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    with pytest.raises(RuntimeError, match="newer imgtag"):
        Store(tmp_path)


def test_second_writer_is_refused_with_a_clear_message(tmp_path):
    with Store(tmp_path), pytest.raises(StoreBusyError, match="another imgtag process"):
        Store(tmp_path)
    with Store(tmp_path):  # released on close
        pass


def test_lock_dies_with_a_killed_process(tmp_path):
    # The child holds the store, says so, and waits; while it lives the folder is busy. Killed with SIGKILL (no
    # cleanup of any kind runs), its lock must be gone with it. Each step is checked, so a child that fails at
    # import, or never takes the lock, fails this test instead of passing it.
    code = (f"from imgtag.store import Store; s = Store({str(tmp_path)!r}); print('held', flush=True); "
            "import time; time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held", child.stderr.read()
        with pytest.raises(StoreBusyError, match=f"pid {child.pid}"):
            Store(tmp_path)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    with Store(tmp_path):
        pass


def test_results_commit_immediately_and_copies_share_one_job(tmp_path):
    with Store(tmp_path) as store:
        run = store.start_run("run", key=KEY)
        a = store.upsert_file(FileRecord(path=str(tmp_path / "a.jpg"), display="a.jpg", root=None, size=1,
                                         mtime_ns=1, status="ok", sha256="s1"), run)
        b = store.upsert_file(FileRecord(path=str(tmp_path / "b.jpg"), display="b.jpg", root=None, size=1,
                                         mtime_ns=1, status="ok", sha256="s1"), run)
        assert store.link_duplicates("s1") == a
        job = store.job_for("s1", KEY, a)
        assert store.job_for("s1", KEY, b).id == job.id
        store.record_attempt(job.id, run, started_at="t", outcome="ok", mode="sync", usage=Usage(10, 5), cost=0.5,
                             commit_job={"status": "ok", "mode": "sync", "fields": {"tags": ["x"]}})
        # another connection sees it at once: nothing waits for the end of the run
        other = sqlite3.connect(tmp_path / "imgtag.db")
        assert other.execute("SELECT status FROM jobs").fetchone()[0] == "ok"
        rows = {r.path: r for r in store.result_rows(KEY, "ecommerce")}
        assert rows["a.jpg"].fields == rows["b.jpg"].fields == {"tags": ["x"]}
        assert rows["a.jpg"].cost_usd == 0.5 and rows["b.jpg"].cost_usd == 0.0
        assert rows["b.jpg"].duplicate_of == "a.jpg"


def test_non_utf8_paths_round_trip(tmp_path):
    weird = tmp_path / b"caf\xe9.jpg".decode("utf-8", "surrogateescape")
    with Store(tmp_path) as store:
        fid = store.upsert_file(FileRecord(path=str(weird), display="caf\\xe9.jpg", root=None, size=1, mtime_ns=1,
                                           status="skipped", reason_code="empty", reason="empty"), None)
        assert store.file_path(fid) == str(weird)


def test_result_rows_carry_the_originals_absolute_path_and_root(tmp_path):
    # Per-image exports (sidecars, captions) write beside the original, so they need its real path:
    # the display path is relative, and non-UTF-8 names must give back their exact bytes.
    weird = tmp_path / "imgs" / b"caf\xe9.jpg".decode("utf-8", "surrogateescape")
    with Store(tmp_path / "out") as store:
        store.upsert_file(FileRecord(path=str(weird), display="caf\\xe9.jpg", root=str(tmp_path / "imgs"), size=1,
                                     mtime_ns=1, status="skipped", reason_code="empty", reason="empty"), None)
        store.upsert_file(FileRecord(path=str(tmp_path / "b.jpg"), display="b.jpg", root=None, size=1,
                                     mtime_ns=1, status="ok", sha256="s1"), None)
        rows = list(store.result_rows(KEY, "ecommerce"))
    assert os.fsencode(rows[0].source_path) == os.fsencode(str(weird))
    assert rows[0].root == str(tmp_path / "imgs")
    assert rows[1].source_path == str(tmp_path / "b.jpg") and rows[1].root is None
