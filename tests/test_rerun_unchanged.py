"""A rerun of a finished, unchanged folder (issue 20 item 1): read in bulk, nothing written per file, the
near-duplicate index kept in the store and only added to, results files left alone when nothing they show
changed, and still every change on disk noticed."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from PIL import Image

from imagegen import make_images, read_jsonl, run_cli
from imgtag.store import Store


class Statements:
    """Every SQL statement imgtag runs against the output folder's store, from the trace callback."""

    def __init__(self, monkeypatch, out: Path) -> None:
        self.sql: list[str] = []
        real = sqlite3.connect
        db_path = str(out / "imgtag.db")

        def connect(database, *args, **kwargs):
            conn = real(database, *args, **kwargs)
            if str(database) == db_path:
                conn.set_trace_callback(self.sql.append)
            return conn

        monkeypatch.setattr(sqlite3, "connect", connect)

    @property
    def file_reads(self) -> list[str]:
        return [s for s in self.sql if s.lstrip().upper().startswith("SELECT") and "FROM meta" not in s]

    @property
    def writes(self) -> list[str]:
        return [s for s in self.sql if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE", "REPLACE"))]


def _rerun_statements(tmp_path: Path, monkeypatch, fake, n: int) -> Statements:
    folder, out = tmp_path / f"in{n}", tmp_path / f"out{n}"
    make_images(folder, n)
    code, output = run_cli(["run", str(folder), "--out", str(out), "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    asked = fake.stats.messages_requests
    with monkeypatch.context() as m:
        traced = Statements(m, out)
        code, output = run_cli(["run", str(folder), "--out", str(out), "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    assert f"{n} files: ok {n}" in output and f"{n} of {n} files already done by earlier runs" in output
    assert fake.stats.messages_requests == asked
    return traced


def test_an_unchanged_rerun_runs_as_many_statements_for_4_files_as_for_24(tmp_path, monkeypatch, fake_anthropic):
    few = _rerun_statements(tmp_path, monkeypatch, fake_anthropic, 4)
    many = _rerun_statements(tmp_path, monkeypatch, fake_anthropic, 24)
    assert few.writes and len(many.writes) == len(few.writes), (few.writes, many.writes)
    # Reads too: one for the whole chunk of files, none per file (meta reads depend on timing: the count's poll).
    assert len(many.file_reads) == len(few.file_reads), (few.file_reads, many.file_reads)
    # The one write that covers the files: the run that saw them, for all of them at once.
    marks = [s for s in many.writes if "SET last_run" in s]
    assert len(marks) == 1 and "json_each" in marks[0]
    assert not [s for s in many.writes if "near_index" in s or "duplicate_of" in s]


def _ids_and_status(out: Path) -> dict[str, tuple[int, int]]:
    db = sqlite3.connect(out / "imgtag.db")
    try:
        return {Path(os.fsdecode(p)).name: (last, seen) for p, last, seen in
                db.execute("SELECT path, last_run, seen_run FROM files")}
    finally:
        db.close()


def test_the_rerun_still_records_which_run_saw_each_file(tmp_path, monkeypatch, fake_anthropic):
    folder, out = tmp_path / "in", tmp_path / "o"
    make_images(folder, 3)
    for _ in range(2):
        code, output = run_cli(["run", str(folder), "--out", str(out), "-q"], fake_anthropic.env(), monkeypatch)
        assert code == 0, output
    assert set(_ids_and_status(out).values()) == {(2, 2)}
    code, status = run_cli(["status", "--out", str(out)], {}, monkeypatch)
    assert "files 3: ok 3" in status


def test_a_file_changed_on_disk_is_examined_and_asked_again(tmp_path, monkeypatch, fake_anthropic):
    folder, out = tmp_path / "in", tmp_path / "o"
    make_images(folder, 3)
    env = fake_anthropic.env()
    assert run_cli(["run", str(folder), "--out", str(out), "-q"], env, monkeypatch)[0] == 0
    before = {r["path"]: r["sha256"] for r in read_jsonl(out / "results.jsonl")}
    asked = fake_anthropic.stats.messages_requests
    changed = folder / "img_0001.jpg"
    st = changed.stat()
    Image.new("RGB", (240, 220), (3, 200, 90)).save(changed, quality=95)
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    code, output = run_cli(["run", str(folder), "--out", str(out), "-q"], env, monkeypatch)
    assert code == 0, output
    after = {r["path"]: r["sha256"] for r in read_jsonl(out / "results.jsonl")}
    assert after["img_0001.jpg"] != before["img_0001.jpg"]
    assert {k: v for k, v in after.items() if k != "img_0001.jpg"} == {
        k: v for k, v in before.items() if k != "img_0001.jpg"}
    assert fake_anthropic.stats.messages_requests == asked + 1
    assert "2 of 3 files already done by earlier runs" in output


def test_a_copy_whose_original_changed_points_to_the_copy_left(tmp_path, monkeypatch, fake_anthropic):
    folder, out = tmp_path / "in", tmp_path / "o"
    make_images(folder, 1)
    original = folder / "img_0000.jpg"
    for name in ("img_0001.jpg", "img_0002.jpg"):
        (folder / name).write_bytes(original.read_bytes())
    env = fake_anthropic.env()
    assert run_cli(["run", str(folder), "--out", str(out), "-q"], env, monkeypatch)[0] == 0
    assert [r["duplicate_of"] for r in read_jsonl(out / "results.jsonl")] == [None, "img_0000.jpg", "img_0000.jpg"]
    Image.new("RGB", (240, 220), (250, 10, 10)).save(original, quality=95)
    assert run_cli(["run", str(folder), "--out", str(out), "-q"], env, monkeypatch)[0] == 0
    assert [r["duplicate_of"] for r in read_jsonl(out / "results.jsonl")] == [None, None, "img_0001.jpg"]


def test_a_deleted_file_leaves_the_latest_run_and_its_results(tmp_path, monkeypatch, fake_anthropic):
    folder, out = tmp_path / "in", tmp_path / "o"
    make_images(folder, 3)
    env = fake_anthropic.env()
    assert run_cli(["run", str(folder), "--out", str(out), "-q"], env, monkeypatch)[0] == 0
    (folder / "img_0002.jpg").unlink()
    code, output = run_cli(["run", str(folder), "--out", str(out), "-q"], env, monkeypatch)
    assert code == 0, output
    assert "2 files: ok 2" in output
    assert [r["path"] for r in read_jsonl(out / "results.jsonl")] == ["img_0000.jpg", "img_0001.jpg"]
    assert len((out / "results.csv").read_text(encoding="utf-8-sig").splitlines()) == 1 + 2
    code, status = run_cli(["status", "--out", str(out)], {}, monkeypatch)
    assert "files 2: ok 2" in status


def _near_index(out: Path) -> list[tuple[int, int]]:
    db = sqlite3.connect(out / "imgtag.db")
    try:
        return db.execute("SELECT file_id, phash FROM near_index ORDER BY file_id").fetchall()
    finally:
        db.close()


def test_the_near_duplicate_index_is_kept_and_only_added_to(tmp_path, monkeypatch, fake_anthropic):
    folder, out = tmp_path / "in", tmp_path / "o"
    make_images(folder, 3)
    env = fake_anthropic.env()
    assert run_cli(["run", str(folder), "--out", str(out), "-q"], env, monkeypatch)[0] == 0
    first = _near_index(out)
    assert [file_id for file_id, _ in first] == [1, 2, 3]
    # A slightly smaller copy of the first image: another file, the same picture.
    with Image.open(folder / "img_0000.jpg") as img:
        img.resize((230, 210)).save(folder / "img_0000_small.jpg", quality=90)
    with monkeypatch.context() as m:
        traced = Statements(m, out)
        assert run_cli(["run", str(folder), "--out", str(out), "-q"], env, monkeypatch)[0] == 0
    assert _near_index(out)[:3] == first and len(_near_index(out)) == 4
    assert len([s for s in traced.writes if "near_index" in s]) == 1  # the new file's entry, nothing rebuilt
    db = sqlite3.connect(out / "imgtag.db")
    near = db.execute("SELECT f.near_duplicate_of FROM files f WHERE f.display = 'img_0000_small.jpg'").fetchone()
    db.close()
    assert near == (1,)


def test_an_older_store_gets_its_near_duplicate_index_from_its_files(tmp_path):
    from imgtag.store.migrations import MIGRATIONS, _v16_rerun_state

    out = tmp_path / "o"
    out.mkdir()
    db = sqlite3.connect(out / "imgtag.db")
    for number, migration in enumerate(MIGRATIONS[:MIGRATIONS.index(_v16_rerun_state)]):
        migration(db)
        db.execute(f"PRAGMA user_version = {number + 1}")
    rows = [(b"/a.jpg", "ok", "ffffffff00000000", None), (b"/b.jpg", "ok", "ffffffff00000001", 1),
            (b"/c.jpg", "failed", None, None), (b"/d.jpg", "ok", "8000000000000000", None)]
    for path, status, phash, dup in rows:
        db.execute("INSERT INTO files(path, display, status, phash, duplicate_of) VALUES (?,?,?,?,?)",
                   (path, path.decode(), status, phash, dup))
    db.commit()
    db.close()
    with Store(out) as store:
        indexed = store.db.execute("SELECT file_id, phash, b0, b3 FROM near_index ORDER BY file_id").fetchall()
        assert [tuple(r) for r in indexed] == [(1, 0xffffffff00000000 - (1 << 64), 0, 0xffff),
                                               (4, 0x8000000000000000 - (1 << 64), 0, 0x8000)]
        from imgtag.store.near import StoredNearIndex

        index = StoredNearIndex(store.db, 6)
        for name in ("e", "f", "g"):
            store.db.execute("INSERT INTO files(path, display, status) VALUES (?, ?, 'ok')", (name.encode(), name))
        assert index.add(5, "ffffffff00000003") == 1       # 2 bits from a.jpg (b.jpg is a byte copy: not indexed)
        assert index.add(6, "8000000000000010") == 4       # the top bit set: stored as a negative integer
        assert index.add(7, "0f0f0f0f0f0f0f0f") is None


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def test_results_files_are_left_alone_until_what_they_show_changes(tmp_path, monkeypatch, fake_anthropic):
    folder, out = tmp_path / "in", tmp_path / "o"
    make_images(folder, 3)
    env = fake_anthropic.env()
    run = ["run", str(folder), "--out", str(out), "-q"]
    assert run_cli(run, env, monkeypatch)[0] == 0
    csv_file, jsonl_file = out / "results.csv", out / "results.jsonl"
    written = _stat(csv_file), _stat(jsonl_file)
    code, output = run_cli(run, env, monkeypatch)
    assert code == 0 and "results.csv" in output
    assert (_stat(csv_file), _stat(jsonl_file)) == written  # nothing changed: not rebuilt

    # A results file someone edited is rebuilt; the other stays.
    csv_file.write_text("mine\n", encoding="utf-8")
    assert run_cli(run, env, monkeypatch)[0] == 0
    assert len(csv_file.read_text(encoding="utf-8-sig").splitlines()) == 1 + 3
    assert _stat(jsonl_file) == written[1]

    # A person's edit in the store shows in both.
    with Store(out) as store:
        store.db.execute("INSERT INTO review_state(file_id, preset_version, provider, model, edits, reviewed,"
                         " version, updated_at) SELECT 1, preset_version, provider, model, '{}', 1, 1, 'now'"
                         " FROM jobs LIMIT 1")
    assert run_cli(run, env, monkeypatch)[0] == 0
    assert _stat(jsonl_file) != written[1]
    assert read_jsonl(jsonl_file)[0]["reviewed"] is True

    # `export --all` writes other rows; the next run writes the latest run's again, here after one file left.
    make_images(tmp_path / "more", 1)
    assert run_cli(["run", str(tmp_path / "more"), "--out", str(out), "-q"], env, monkeypatch)[0] == 0
    assert run_cli(["export", "--out", str(out), "--all"], {}, monkeypatch)[0] == 0
    assert len(read_jsonl(jsonl_file)) == 4
    assert run_cli(["run", str(tmp_path / "more"), "--out", str(out), "-q"], env, monkeypatch)[0] == 0
    assert [r["path"] for r in read_jsonl(jsonl_file)] == ["../more/img_0000.jpg"]


def test_a_file_back_in_the_inputs_is_back_in_the_results(tmp_path, monkeypatch, fake_anthropic):
    folder, out = tmp_path / "in", tmp_path / "o"
    make_images(folder, 3)
    env = fake_anthropic.env()
    run = ["run", str(folder), "--out", str(out), "-q"]
    assert run_cli(run, env, monkeypatch)[0] == 0
    aside = tmp_path / "aside.jpg"
    (folder / "img_0001.jpg").rename(aside)
    assert run_cli(run, env, monkeypatch)[0] == 0
    assert len(read_jsonl(out / "results.jsonl")) == 2
    aside.rename(folder / "img_0001.jpg")
    (folder / "img_0002.jpg").rename(aside)
    # As many files as the last time, but not the same ones: rewritten.
    assert run_cli(run, env, monkeypatch)[0] == 0
    assert [r["path"] for r in read_jsonl(out / "results.jsonl")] == ["img_0000.jpg", "img_0001.jpg"]


def test_a_stored_row_makes_the_same_file_record_as_its_columns_say(tmp_path):
    import dataclasses

    from imgtag.ingest.discover import Discovered
    from imgtag.ingest.pipeline import _record_from_row
    from imgtag.store import FileRecord

    record = FileRecord(path=str(tmp_path / "a.jpg"), display="a.jpg", root=str(tmp_path), size=10, mtime_ns=20,
                        status="ok", reason_code=None, reason=None, sha256="ab" * 32, format="JPEG", width=300,
                        height=200, phash="8000000000000000", blur=12.5, out_width=150, out_height=100,
                        visual_tokens=42)
    with Store(tmp_path / "o") as store:
        store.upsert_file(record, None)
        row = store.known_files([record.path], None)[os.fsencode(record.path)]
    d = Discovered(record.path, "a.jpg", str(tmp_path), 10, 20)
    assert dataclasses.asdict(_record_from_row(d, row)) == dataclasses.asdict(record)
