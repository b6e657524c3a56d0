"""The counts `imgtag status` reads (store/tallies.py: the tally_* summaries kept by triggers) always equal the
same counts made from the rows, after every kind of write a folder sees: a run with ok, failed, refused and unreadable
images and a copy, a retry, a second target, review edits, a batch run with expired items, a cancelled batch, a
changed and a deleted file, prune. A drift in any trigger fails here. A store from before the summaries gets them
from its rows when it is opened (the migration's backfill)."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imagegen import make_images, run_cli
from imgtag.app.summary import summarize
from imgtag.export import fileset
from imgtag.export.targets import all_targets, key_of
from imgtag.store import FileRecord, Store, WorkKey, tallies
from imgtag.store.migrations import MIGRATIONS
from imgtag.store.prune import remove_files
from reviewfix import open_review

BATCH = ["--mode", "batch", "--poll-interval", "0.05", "-q"]


def assert_tallies_match_rows(out: Path) -> None:
    """Each summary equals its recount, the store is consistent, and `status`'s counts (summaries minus the files
    outside the file set) equal the same counts made from the set's rows."""
    with Store(out, lock=False, create=False) as store:
        db = store.db
        assert tallies.kept(db) == tallies.recount(db)
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        file_set = fileset.current(store)
        since = file_set.run if file_set else None
        for meta in all_targets(store):
            key = key_of(meta)
            scope, params = ("f.seen_run >= ?", (since,)) if since is not None else ("1", ())
            files, answers = tallies.rows_counts(db, key, scope, params)
            assert tallies.counts(db, key, since) == (files, +answers)
            reviews = tallies.reviews(db, key, since)
            assert reviews is None or reviews == _reviews_from_rows(db, key, since)
            spent = tallies.spend(db, key)
            (rows_cost, unknown, credits) = db.execute(
                "SELECT TOTAL(a.cost_usd), SUM(a.cost_unknown), SUM(a.credits_amount) FROM attempts a"
                " JOIN jobs j ON j.id = a.job_id WHERE j.preset_version = ? AND j.provider = ? AND j.model = ?",
                (key.preset_version, key.provider, key.model)).fetchone()
            assert spent.cost_usd == pytest.approx(rows_cost) and spent.cost_unknown == unknown
            assert spent.credits_spent == credits
            summarize(db, key, since_run=since)  # runs on the summaries without error


def _reviews_from_rows(db: sqlite3.Connection, key: WorkKey, since: int | None) -> tuple[int, int, int]:
    in_set = " AND f.seen_run >= ?" if since is not None else ""
    return tuple(db.execute(
        "SELECT COALESCE(SUM(r.reviewed = 1), 0), COALESCE(SUM(r.reviewed = -1), 0), COALESCE(SUM(r.edits <> '{}'), 0)"
        f" FROM review_state r JOIN files f ON f.id = r.file_id AND f.status = 'ok'{in_set} JOIN jobs j"
        " ON j.sha256 = f.sha256 AND j.status = 'ok' AND j.preset_version = r.preset_version"
        " AND j.provider = r.provider AND j.model = r.model WHERE r.preset_version = ? AND r.provider = ?"
        " AND r.model = ?", (*(() if since is None else (since,)), key.preset_version, key.provider, key.model)
    ).fetchone())


def _run(args: list[str], fake: Any, monkeypatch: pytest.MonkeyPatch, *, codes: tuple[int, ...] = (0, 1)) -> str:
    code, output = run_cli(args, fake.env(), monkeypatch)
    assert code in codes, output
    return output


def _answers() -> Any:
    """The second of every four images refused, the third always answered with JSON that fails the schema (failed
    images: a retry asks the invalid ones again, and they leave 'failed'; the refused stay)."""
    order: dict[str, int] = {}

    def respond(ctx: dict[str, Any]) -> dict[str, Any] | None:
        n = order.setdefault(str(ctx.get("image_key")), len(order))
        return {"output_mode": "refusal"} if n % 4 == 1 else {"output_mode": "invalid"} if n % 4 == 2 else None
    return respond


def test_summaries_equal_a_recount_after_every_kind_of_write(tmp_path: Path, fake_anthropic_factory: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    images, out = tmp_path / "in", tmp_path / "out"
    make_images(images, 10)
    shutil.copy(images / "img_0001.jpg", images / "zz_copy.jpg")  # an exact copy shares its original's job
    (images / "broken.jpg").write_bytes(b"not an image")  # unreadable: a failed file, never asked
    fake = fake_anthropic_factory(respond=_answers(), batch_processing_s=0.05)
    args = ["run", str(images), "--out", str(out), "-q", "--preset", "ecommerce"]
    _run(args, fake, monkeypatch)
    assert_tallies_match_rows(out)
    with Store(out, lock=False, create=False) as store:
        causes = {r[0] for r in store.db.execute("SELECT error_type FROM jobs WHERE status = 'failed'")}
        assert len(causes) == 2, causes  # refused and invalid answers

    fake.config.respond = None  # from now on every answer is good
    _run(["retry", "--out", str(out), "-q"], fake, monkeypatch)
    assert_tallies_match_rows(out)
    with Store(out, lock=False, create=False) as store:  # the invalid ones were answered
        assert {r[0] for r in store.db.execute("SELECT error_type FROM jobs WHERE status = 'failed'")} == {"refused"}

    # Review edits, an approval and a rejection, then an edit undone.
    store, review = open_review(out)
    with store:
        ids = [r[0] for r in store.db.execute("SELECT f.id FROM files f JOIN jobs j ON j.sha256 = f.sha256"
                                              " WHERE f.status = 'ok' AND j.status = 'ok' ORDER BY f.id LIMIT 3")]
        review.patch(ids[0], {"fields": {"color": "green"}, "reviewed": True})
        review.patch(ids[1], {"fields": {"style": "formal"}})
        review.patch(ids[2], {"rejected": True})
    assert_tallies_match_rows(out)
    store, review = open_review(out)
    with store:
        review.patch(ids[0], {"fields": {"color": "red"}})  # the same image edited again
        review.patch(ids[1], {"reviewed": True})  # an edited image approved
        review.queue_retry(ids[0])  # asked again by `imgtag retry`: its job leaves ok and comes back
    assert_tallies_match_rows(out)
    _run(["retry", "--out", str(out), "-q"], fake, monkeypatch)
    assert_tallies_match_rows(out)

    # A second target over the same folder, in batch mode, with items that expire (resubmitted up to the cap).
    fake.config.p_batch_expired = 0.5
    _run([*args, "--model", "claude-sonnet-5-5", *BATCH], fake, monkeypatch)
    fake.config.p_batch_expired = 0.0
    assert_tallies_match_rows(out)

    # New images sent in a batch that is cancelled (its items back to pending), then answered by a sync run.
    make_images(tmp_path / "more", 3, size=(200, 180))
    for p in (tmp_path / "more").iterdir():
        shutil.copy(p, images / f"new_{p.name}")
    fake.config.batch_processing_s = 30.0
    _run([*args, *BATCH, "--detach"], fake, monkeypatch)
    _run(["cancel", "--out", str(out)], fake, monkeypatch, codes=(0,))
    assert_tallies_match_rows(out)
    fake.config.batch_processing_s = 0.05
    _run(args, fake, monkeypatch)
    assert_tallies_match_rows(out)

    # A reviewed image replaced by a copy of another answered one, a file changed (new content, a new size), another
    # deleted, then pruned.
    with Store(out, lock=False, create=False) as store:
        first, second = (store.display_of(i) for i in ids[:2])
    assert first and second
    shutil.copy(images / second, images / first)
    Image.new("RGB", (300, 200), (250, 10, 10)).save(images / "img_0002.jpg", quality=95)
    gone = (images / "img_0003.jpg").read_bytes()
    (images / "img_0003.jpg").unlink()
    _run(args, fake, monkeypatch)
    assert_tallies_match_rows(out)  # img_0003 is outside the file set now: counted from its row
    _run(["prune", "--out", str(out), "--yes"], fake, monkeypatch)
    assert_tallies_match_rows(out)
    # The pruned image comes back under another name: its job (kept, with no file left) counts again.
    (images / "back.jpg").write_bytes(gone)
    _run(args, fake, monkeypatch)
    assert_tallies_match_rows(out)

    # A store from before the summaries: opened by this version, it counts them from its rows.
    db = sqlite3.connect(out / "imgtag.db")
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'tally_%'"
                              " UNION ALL SELECT 'attempts_request'").fetchall():
        db.execute(f"DROP {'INDEX' if name == 'attempts_request' else 'TRIGGER'} {name}")
    for table in ("tally_answers", "tally_spend", "tally_sizes", "tally_review"):
        db.execute(f"DROP TABLE {table}")
    db.execute(f"PRAGMA user_version = {MIGRATIONS.index(_tallies_migration())}")
    db.close()
    assert_tallies_match_rows(out)


def _tallies_migration() -> Any:
    return next(m for m in MIGRATIONS if m.__name__ == "_v17_status_tallies")


def test_status_counts_outside_the_file_set_from_rows(tmp_path: Path) -> None:
    """Files an earlier run saw and the latest did not are left out of the counts (summaries minus their rows), and
    a file set that is the smaller part of the store is counted from its own rows."""
    from synthstore import MODEL, PROVIDER, fill

    out = tmp_path / "out"
    meta = fill(out, 400, root=str(tmp_path / "photos"))
    key = WorkKey(meta["preset_version"], PROVIDER, MODEL)
    with Store(out, lock=False, create=False) as store:
        db = store.db
        assert tallies.kept(db) == tallies.recount(db)  # rows written whole (no reserved row first)
        # A file row removed, then written whole again (no reserved row first), after its content's job: it counts
        # for that job at once, and gives it its size back. Then a copy of it.
        file_id, path, sha = db.execute("SELECT f.id, f.path, f.sha256 FROM files f JOIN jobs j ON j.file_id = f.id"
                                        " WHERE j.status = 'ok' ORDER BY f.id LIMIT 1").fetchone()
        remove_files(store, [file_id])
        assert tallies.kept(db) == tallies.recount(db)
        for name in (path.decode(), "/photos/copy.jpg"):
            store.upsert_file(FileRecord(name, name[8:], "/photos", 1, 1, "ok", sha256=sha, width=1600, height=1200),
                              None, 1)
            assert tallies.kept(db) == tallies.recount(db)
        run = store.start_run("run")
        everything = summarize(db, key)
        for part in (10, 390):  # a few files outside the set, then most of them
            db.execute("UPDATE files SET seen_run = CASE WHEN id > ? THEN ? ELSE ? - 1 END", (part, run, run))
            files, answers = tallies.rows_counts(db, key, "f.seen_run >= ?", (run,))
            assert tallies.counts(db, key, run) == (files, +answers)
            reviews = tallies.reviews(db, key, run)
            assert reviews is None if part > 200 else reviews == _reviews_from_rows(db, key, run) != (0, 0, 0)
            in_set = summarize(db, key, since_run=run)
            (expected,) = db.execute("SELECT COUNT(*) FROM files WHERE seen_run >= ?", (run,)).fetchone()
            assert in_set.files == expected < everything.files


SELECTIVE = ("sha256=?", "rowid=?", "file_id=?", "request_id=?")


def test_every_trigger_statement_is_a_seek(tmp_path: Path) -> None:
    """The summaries' triggers run inside every write: each of their statements finds its rows by an index (NEW and
    OLD bound to values), never by reading a table that grows with the images."""
    with Store(tmp_path / "out") as store:
        db = store.db
        bodies = [sql for (sql,) in db.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger'"
                                               " AND name LIKE 'tally_%'")]
        assert len(bodies) >= 20
        for sql in bodies:
            body = sql[sql.index(" BEGIN ") + 7:sql.rindex(" END")]
            for statement in filter(str.strip, re.sub(r"\b(?:NEW|OLD)\.\w+", "1", body).split(";")):
                plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + statement)]
                # A seek by a column that picks a few rows (not, say, every ok job by jobs_status).
                scans = [line for line in plan if (line.startswith("SCAN ") and "subquery" not in line
                         and "CONSTANT ROW" not in line and not line.startswith("SCAN tally_"))
                         or (line.startswith("SEARCH ") and not line.startswith("SEARCH tally_")
                         and not any(seek in line for seek in SELECTIVE))]
                assert not scans, (statement, plan)


def test_a_large_store_says_it_is_upgrading_before_it_does(tmp_path: Path) -> None:
    """The first command after an upgrade fills the new summaries from every row: a minute at a million images.
    A large store says so first, in one line on stderr (the logger's last-resort output: the CLI sets up no
    logging); a small one, or a store that is already current, says nothing. In a process of its own, as a user
    meets it (pytest's log capture would swallow the line)."""
    import subprocess
    import sys

    from synthstore import fill

    out = tmp_path / "out"
    fill(out, 40, root=str(tmp_path / "photos"))

    def open_set_back(threshold: int) -> str:
        db = sqlite3.connect(out / "imgtag.db")
        db.execute(f"PRAGMA user_version = {MIGRATIONS.index(_tallies_migration())}")
        db.close()
        code = ("import sys; from imgtag.store import Store, migrations, tallies;"
                f" migrations.ANNOUNCE_UPGRADE_FROM_FILES = {threshold};"
                " store = Store(sys.argv[1], lock=False, create=False);"
                " assert tallies.kept(store.db) == tallies.recount(store.db)")
        done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, check=True)
        return done.stderr

    assert open_set_back(41) == ""  # 40 files, under the threshold: quiet
    assert open_set_back(40) == (f"imgtag: upgrading {out / 'imgtag.db'} to this version's format (40 files; once,"
                                 " this may take a minute)\n")
