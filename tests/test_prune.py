"""`imgtag prune` through the real CLI (issue 20 item 3): files that no longer exist on disk leave the store, said
first (a dry run by default), with `--yes`; answers stay for copies, review edits of a removed image go with it,
and nothing on disk is touched."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from imagegen import one_sentence, read_jsonl, run_cli
from imgtag.store import Store
from reviewfix import open_review, tagged_folder


def _snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under the folder: size, mtime and bytes (what prune must never change)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _count(out: Path, table: str) -> int:
    db = sqlite3.connect(out / "imgtag.db")
    try:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


def test_prune_says_what_would_go_then_removes_it_with_yes(tmp_path, fake_anthropic_factory, monkeypatch):
    images, out, args = tagged_folder(tmp_path, fake_anthropic_factory, monkeypatch, n=5)
    # A copy of img_0000 under another name, found after it: it shares img_0000's answer.
    shutil.copy(images / "img_0000.jpg", images / "zz_copy.jpg")
    fake = fake_anthropic_factory()
    code, output = run_cli(args, fake.env(), monkeypatch)
    assert code == 0, output
    assert fake.stats.messages_requests == 0  # the copy was answered from the store
    (images / "img_0000.jpg").unlink()  # the original of the copy
    (images / "img_0003.jpg").unlink()
    on_disk = _snapshot(images)

    code, output = run_cli(["prune", "--out", str(out)], {}, monkeypatch)
    assert code == 0, output
    assert "2 files in the store no longer exist on disk (of 6)" in output, output
    assert "img_0000.jpg" in output and "img_0003.jpg" in output and "zz_copy.jpg" not in output
    assert "--yes" in output and "nothing removed yet" in output
    assert _count(out, "files") == 6  # a dry run removes nothing
    assert _snapshot(images) == on_disk

    code, output = run_cli(["prune", "--out", str(out), "--yes"], {}, monkeypatch)
    assert code == 0, output
    assert "removed 2 files" in output, output
    assert _count(out, "files") == 4
    assert _count(out, "jobs") == 5  # every paid answer is kept
    assert _snapshot(images) == on_disk  # the images (and their sidecars) untouched

    with Store(out, lock=False, create=False) as store:
        copy = store.db.execute("SELECT id, duplicate_of FROM files WHERE display = 'zz_copy.jpg'").fetchone()
        assert copy["duplicate_of"] is None  # the copy is the original of its content now
        owners = store.db.execute("SELECT COUNT(*) FROM jobs WHERE file_id NOT IN (SELECT id FROM files)"
                                  " AND file_id IS NOT NULL").fetchone()[0]
        assert owners == 0
        assert store.db.execute("PRAGMA foreign_key_check").fetchall() == []

    code, output = run_cli(["status", "--out", str(out)], {}, monkeypatch)
    assert code == 0, output
    assert "files 4: ok 4" in output, output  # nothing reported pending for the files that went
    code, output = run_cli(["export", "--out", str(out)], {}, monkeypatch)
    assert code == 0, output
    rows = {r["path"]: r for r in read_jsonl(out / "results.jsonl")}
    assert sorted(rows) == ["img_0001.jpg", "img_0002.jpg", "img_0004.jpg", "zz_copy.jpg"]
    assert rows["zz_copy.jpg"]["status"] == "ok" and rows["zz_copy.jpg"]["duplicate_of"] is None

    # The same image back (restored from a backup): answered from the kept job, nothing asked again.
    shutil.copy(images / "zz_copy.jpg", images / "img_0000.jpg")
    fake = fake_anthropic_factory()
    code, output = run_cli(args, fake.env(), monkeypatch)
    assert code == 0, output
    assert fake.stats.messages_requests == 0  # its content's answer was kept
    rows = {r["path"]: r for r in read_jsonl(out / "results.jsonl")}
    assert rows["img_0000.jpg"]["status"] == "ok" and "img_0003.jpg" not in rows

    code, output = run_cli(["prune", "--out", str(out)], {}, monkeypatch)
    assert code == 0 and "nothing to prune" in output, output


def test_review_edits_of_a_removed_image_go_with_it(tmp_path, fake_anthropic_factory, monkeypatch):
    images, out, _ = tagged_folder(tmp_path, fake_anthropic_factory, monkeypatch, n=3)
    store, review = open_review(out)
    ids = {item["path"]: item["id"] for item in review.list({"limit": 100})["items"]}
    review.patch(ids["img_0001.jpg"], {"fields": {"category": "裙子"}, "reviewed": True})
    review.patch(ids["img_0002.jpg"], {"reviewed": True})
    store.close()
    (images / "img_0001.jpg").unlink()

    code, output = run_cli(["prune", "--out", str(out)], {}, monkeypatch)
    assert code == 0, output
    assert "1 file in the store no longer exists on disk" in output, output
    assert "1 image of them holds review edits or approvals, which go with them" in output, output

    code, output = run_cli(["prune", "--out", str(out), "--yes"], {}, monkeypatch)
    assert code == 0, output
    assert _count(out, "review_ops") == 2  # the history of what each write did stays
    store, review = open_review(out)
    try:
        gone = ids["img_0001.jpg"]
        for table in ("review_state", "review_versions"):
            assert store.db.execute(f"SELECT COUNT(*) FROM {table} WHERE file_id = ?", (gone,)).fetchone()[0] == 0
        assert review.list({"reviewed": "true"})["total"] == 1  # img_0002's approval is untouched
    finally:
        store.close()
    code, output = run_cli(["status", "--out", str(out)], {}, monkeypatch)
    assert code == 0 and "review: 1 reviewed, 0 edited, 1 not yet reviewed" in output, output


def test_a_folder_gone_as_a_whole_is_named(tmp_path, fake_anthropic_factory, monkeypatch):
    images, out, _ = tagged_folder(tmp_path, fake_anthropic_factory, monkeypatch, n=2)
    images.rename(tmp_path / "elsewhere")
    code, output = run_cli(["prune", "--out", str(out)], {}, monkeypatch)
    assert code == 0, output
    assert f"the folder {images} is gone with all 2 files (a drive that is not mounted?)" in output, output
    assert _count(out, "files") == 2


def test_prune_errors_are_one_sentence(tmp_path, fake_anthropic_factory, monkeypatch):
    code, output = run_cli(["prune", "--out", str(tmp_path / "none")], {}, monkeypatch)
    assert code == 2 and "no imgtag store in" in one_sentence(output), output
    assert not (tmp_path / "none").exists()  # nothing created

    _, out, _ = tagged_folder(tmp_path, fake_anthropic_factory, monkeypatch, n=1)
    with Store(out):  # another imgtag process holds the folder (a run): prune waits for nobody, changes nothing
        code, output = run_cli(["prune", "--out", str(out), "--yes"], {}, monkeypatch)
    assert code == 2 and "another imgtag process" in one_sentence(output), output
