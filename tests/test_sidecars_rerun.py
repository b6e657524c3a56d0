"""A rerun on a folder imgtag wrote sidecars into: the sidecars are not images and are not reported as such."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from imagegen import make_images, read_jsonl, run_cli
from imgtag.ingest.discover import discover

FORMATS = "csv,jsonl,metadata-jsonl,txt,json-sidecar,xmp"


def test_rerun_ignores_sidecars_imgtag_wrote_and_still_reports_the_users_own_files(
        tmp_path: Path, fake_anthropic_factory, monkeypatch) -> None:
    images = tmp_path / "in"
    make_images(images, 3)
    make_images(images / "sub", 1)
    # A JPEG without an image extension: its caption (noext.txt) has no image sibling by name, so only the
    # ledger (export_files) knows imgtag wrote it.
    Image.new("RGB", (240, 220), (200, 10, 10)).save(images / "noext", format="JPEG")
    (images / "notes.txt").write_text("my shopping list", encoding="utf-8")  # the user's own, unrelated
    (images / "report.pdf").write_bytes(b"%PDF-1.4 not an image")
    fake = fake_anthropic_factory()
    out = tmp_path / "out"
    args = ["run", str(images), "--out", str(out), "-q", "--format", FORMATS]
    code, first = run_cli(args, fake.env(), monkeypatch)
    assert code == 0, first
    assert "skipped 2" in first and "not_image 2" in first  # the user's two files are not images
    assert (images / "img_0000.txt").exists() and (images / "img_0000.jpg.xmp").exists()
    assert (images / "img_0000.jpg.imgtag.json").exists() and (images / "metadata.jsonl").exists()
    assert (images / "noext.txt").exists()
    rows_before = {r["path"]: r["status"] for r in read_jsonl(out / "results.jsonl")}

    code, second = run_cli(args, fake.env(), monkeypatch)
    assert code == 0, second
    rows = {r["path"]: r for r in read_jsonl(out / "results.jsonl")}
    assert {p: r["status"] for p, r in rows.items()} == rows_before
    skipped = sorted(p for p, r in rows.items() if r["status"] == "skipped")
    assert skipped == ["notes.txt", "report.pdf"], skipped
    assert "7 files: ok 5, skipped 2" in second and "not_image 2" in second, second


def test_sidecar_rule_by_name_sibling_and_ledger(tmp_path: Path) -> None:
    from imgtag.ingest.sidecars import SidecarRule

    folder = tmp_path / "f"
    folder.mkdir()
    for name in ("a.jpg", "a.txt", "a.jpg.xmp", "b.XMP", "a.jpg.imgtag.json", "metadata.jsonl", "lonely.txt",
                 "c.HEIC", "c.txt", "ours.txt", "takeout.jpg.json"):
        (folder / name).write_bytes(b"x")
    ours = str(folder / "ours.txt")
    rule = SidecarRule(ours=lambda path: path == ours)
    found = sorted(d.display for d in discover([str(folder)], sidecars=rule))
    # lonely.txt has no image of its stem and is not in the ledger: the user's, reported as today.
    assert found == ["a.jpg", "c.HEIC", "lonely.txt", "takeout.jpg.json"]
    assert sorted(d.display for d in discover([str(folder)])) == sorted(p.name for p in folder.iterdir())
    # Given one by one (a shell glob), the same rule applies.
    named = sorted(str(p) for p in folder.iterdir())
    assert sorted(Path(d.path).name for d in discover(named, sidecars=rule)) == found


def test_sidecar_rows_an_older_version_recorded_are_dropped_on_the_next_run(
        tmp_path: Path, fake_anthropic_factory, monkeypatch) -> None:
    from imgtag.ingest import pipeline

    images = tmp_path / "in"
    make_images(images, 2)
    (images / "notes.txt").write_text("mine", encoding="utf-8")
    fake = fake_anthropic_factory()
    out = tmp_path / "out"
    args = ["run", str(images), "--out", str(out), "-q", "--format", "jsonl,txt,xmp,json-sidecar"]
    assert run_cli(args, fake.env(), monkeypatch)[0] == 0
    with monkeypatch.context() as m:  # a version without the sidecar rule records them as "not an image"
        m.setattr(pipeline.SidecarRule, "ignores", lambda *a: False)
        assert run_cli(args, fake.env(), monkeypatch)[0] == 0
    assert any(r["path"].endswith(".xmp") for r in read_jsonl(out / "results.jsonl"))
    code, output = run_cli(args, fake.env(), monkeypatch)
    assert code == 0, output
    rows = {r["path"]: r["status"] for r in read_jsonl(out / "results.jsonl")}
    assert rows == {"img_0000.jpg": "ok", "img_0001.jpg": "ok", "notes.txt": "skipped"}, rows
