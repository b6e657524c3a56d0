"""`imgtag scan` and `imgtag run --dry-run` over the real corpus, through the CLI."""

from __future__ import annotations

import json
import os

from typer.testing import CliRunner

from conftest import CORPUS, needs_full_corpus
from imgtag.cli.commands import app


def scan_json(tmp_path, *paths: str) -> tuple[list[dict], dict]:
    result = CliRunner().invoke(app, ["scan", *paths, "--json", "--out", str(tmp_path / "out")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return lines[:-1], lines[-1]


@needs_full_corpus
def test_scan_reports_every_file_exactly_once_with_reasons(tmp_path):
    entries, summary = scan_json(tmp_path, str(CORPUS))
    on_disk = sorted(os.path.relpath(os.path.join(d, f), CORPUS) for d, _, fs in os.walk(CORPUS) for f in fs)
    assert sorted(e["path"] for e in entries) == on_disk
    for e in entries:
        assert e["status"] in ("ok", "skipped", "failed")
        if e["status"] != "ok":
            assert e["reason"] and "\n" not in e["reason"], e
        else:
            assert e["width"] > 0 and e["height"] > 0 and len(e["sha256"]) == 64
            assert e["est_input_tokens"] > 0
    by_path = {e["path"]: e for e in entries}
    # EXIF orientation 6: stored 308x231, reported as seen
    assert (by_path["edge/libvips_rotation_6_progressive.jpg"]["width"],
            by_path["edge/libvips_rotation_6_progressive.jpg"]["height"]) == (231, 308)
    # byte-identical copies point at the first one discovered
    assert by_path["photos/coral_pets.jpg"]["duplicate_of"] == "edge/PETS.JPEG"
    assert by_path["photos/easyocr_chinese.jpg"]["duplicate_of"] == "edge/中文路牌_愚园路.jpg"
    assert by_path["edge/pillow_heif_200MP.heic"]["status"] == "failed"
    assert "bomb" in by_path["edge/pillow_bmp_reallybig.bmp"]["reason"]
    assert by_path["edge/zero_bytes.jpg"]["status"] == "skipped"
    assert summary["files"] == len(on_disk)
    assert sum(summary["by_status"].values()) == len(on_disk)
    assert summary["distinct_images"] < summary["by_status"]["ok"]  # duplicates are counted once
    for est in summary["estimates"]:
        # Batch is half price; a cached prefix's one write is a 1-hour one there (2x instead of 1.25x).
        assert est["standard_usd"] / 2 - 1e-9 <= est["batch_usd"] <= est["standard_usd"] * 0.55


def test_scan_human_table_and_rescan_uses_the_store(tmp_path):
    runner = CliRunner()
    first = runner.invoke(app, ["scan", str(CORPUS / "edge"), "--out", str(tmp_path / "o")], catch_exceptions=False)
    assert first.exit_code == 0
    assert "Traceback" not in first.output and "Estimated cost" in first.output
    second = runner.invoke(app, ["scan", str(CORPUS / "edge"), "--out", str(tmp_path / "o")], catch_exceptions=False)
    assert second.stdout == first.stdout  # unchanged files are answered from the store, identically


def test_dry_run_estimates_without_a_key_or_requests(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # nothing listens: any request would fail
    result = CliRunner().invoke(app, ["run", str(CORPUS / "photos"), "--dry-run", "--out", str(tmp_path / "o")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output and "Nothing was sent" in result.output
    assert "standard" in result.output and "batch" in result.output
    assert not (tmp_path / "o" / "results.csv").exists()


def test_help_lists_the_commands():
    result = CliRunner().invoke(app, ["--help"])
    for command in ("scan", "run", "status", "export", "retry", "presets"):
        assert command in result.output


def test_inputs_that_match_nothing_are_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-x")
    for args in (["scan", str(tmp_path / "missing")], ["run", str(tmp_path / "missing"), "-q"]):
        result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o")], catch_exceptions=False)
        assert result.exit_code == 2
        assert "nothing matched" in result.output


def test_dry_run_and_scan_agree_on_unreadable_files(tmp_path, monkeypatch):
    """Both are previews that spend nothing: a folder with an empty, a truncated and a not-an-image file made
    `scan` exit 0 and `run --dry-run` exit 1 (and the dry run never said which files it would leave out, or why)."""
    from imagegen import make_images

    make_images(tmp_path / "in", 2)
    (tmp_path / "in" / "empty.jpg").write_bytes(b"")
    (tmp_path / "in" / "trunc.jpg").write_bytes((tmp_path / "in" / "img_0000.jpg").read_bytes()[:400])
    (tmp_path / "in" / "notes.jpg").write_text("hi\n")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    runner = CliRunner()
    scan = runner.invoke(app, ["scan", str(tmp_path / "in"), "--out", str(tmp_path / "s")], catch_exceptions=False)
    dry = runner.invoke(app, ["run", str(tmp_path / "in"), "--dry-run", "-q", "--out", str(tmp_path / "o")],
                        catch_exceptions=False)
    assert (scan.exit_code, dry.exit_code) == (0, 0), dry.output
    reasons = "empty 1, not_image 1, truncated 1"
    assert reasons in scan.output
    assert f"3 of 5 files will not be tagged: {reasons}" in dry.output.replace("\n  ", " ")
    events = runner.invoke(app, ["run", str(tmp_path / "in"), "--dry-run", "-q", "--out", str(tmp_path / "e"),
                                 "--events", "-"], catch_exceptions=False)
    finished = [json.loads(line) for line in events.stdout.splitlines() if '"run_finished"' in line]
    assert events.exit_code == 0 and finished[0]["exit_code"] == 0, events.output
    _files, summary = scan_json(tmp_path, str(tmp_path / "in"))
    assert summary["by_reason"] == {"empty": 1, "not_image": 1, "truncated": 1}


def test_an_input_that_matches_nothing_beside_others_stops_before_anything(tmp_path, fake_anthropic, monkeypatch):
    """`imgtag run photos nope` tagged photos and ended with "nothing matched 'nope'" and exit 0; a typo in a tool
    that spends money: one sentence naming it, exit 2, before anything is sent or written. `scan` says the same."""
    from imagegen import make_images, one_sentence, run_cli

    make_images(tmp_path / "in", 2)
    monkeypatch.chdir(tmp_path)
    for args in (["in", "nope"], ["in", "in/*.png"], ["nope", "in"]):
        code, output = run_cli(["run", *args, "--out", "o", "-q"], fake_anthropic.env(), monkeypatch)
        missing = args[1] if args[0] == "in" else args[0]
        assert code == 2 and one_sentence(output) == f"imgtag: nothing matched {missing!r}: no such file or folder"
        assert fake_anthropic.stats.total_requests == 0 and not (tmp_path / "o").exists()
    code, output = run_cli(["scan", "in", "nope"], {}, monkeypatch)
    assert code == 2 and one_sentence(output) == "imgtag: nothing matched 'nope': no such file or folder"
    code, output = run_cli(["run", "in", "in/*.jpg", "--out", "o", "-q"], fake_anthropic.env(), monkeypatch)
    assert code == 0, output  # every argument matched
