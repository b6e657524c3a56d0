"""What the output folder, the summary and `status` report (issue 17 items 1-6): counts that add up, one path
base, nothing written by a refused or read-only command, messages that say what was written."""

from __future__ import annotations

import dataclasses
import json

from imagegen import make_images, one_sentence, run_cli


def test_a_provider_without_batch_refuses_batch_mode_before_creating_anything(tmp_path, monkeypatch):
    # The refusal comes from the provider's declared capabilities (whichever provider lacks a batch API),
    # before the store, the progress line or any results file exists.
    from imgtag.providers.openai_provider import OpenAIProvider

    monkeypatch.setattr(OpenAIProvider, "capabilities", dataclasses.replace(OpenAIProvider.capabilities, batch=False))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    make_images(tmp_path / "ds", 2)
    out = tmp_path / "x"
    code, output = run_cli(["run", str(tmp_path / "ds"), "--provider", "openai", "--mode", "batch",
                            "--out", str(out)], {}, monkeypatch)
    assert code == 2
    line = one_sentence(output)
    assert "--mode batch" in line and "openai" in line
    assert not out.exists()


def _rows(db_path, table: str) -> int:
    import sqlite3

    with sqlite3.connect(db_path) as db:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_scan_never_writes_into_a_store_a_run_made(tmp_path, monkeypatch):
    make_images(tmp_path / "shop", 3)
    make_images(tmp_path / "photos", 5, size=(300, 260))
    monkeypatch.chdir(tmp_path)
    code, output = run_cli(["run", "shop", "--dry-run", "-q"], {}, monkeypatch)  # creates ./imgtag-out
    assert code == 0, output
    db = tmp_path / "imgtag-out" / "imgtag.db"
    before = (_rows(db, "files"), _rows(db, "runs"))
    for args in (["scan", "photos"], ["scan", "photos", "--out", "imgtag-out"]):
        code, output = run_cli(args, {}, monkeypatch)
        assert code == 0, output
        assert "5 files" in output
        assert (_rows(db, "files"), _rows(db, "runs")) == before, args
    code, output = run_cli(["status"], {}, monkeypatch)
    assert output.startswith("3 files")


def test_scan_keeps_reusing_the_store_it_made_for_itself(tmp_path, monkeypatch):
    make_images(tmp_path / "photos", 2)
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        code, output = run_cli(["scan", "photos", "--out", "s"], {}, monkeypatch)
        assert code == 0, output
    assert _rows(tmp_path / "s" / "imgtag.db", "runs") == 2


# -- item 1: one set of files, one path base ----------------------------------------------------------

def _shop(root):
    """shop/photos and shop/large, with one file name in both (the issue's exifpy_42_IndexError.jpg)."""
    make_images(root / "shop" / "photos", 3)
    make_images(root / "shop" / "large", 2, size=(400, 300))
    return root / "shop"


def test_results_and_status_cover_the_latest_run_with_one_path_base(tmp_path, monkeypatch, fake_anthropic):
    from imagegen import read_jsonl

    shop = _shop(tmp_path)
    out = tmp_path / "o"
    env = fake_anthropic.env()
    code, output = run_cli(["run", str(shop), "--out", str(out), "-q"], env, monkeypatch)
    assert code == 0, output
    assert sorted(r["path"] for r in read_jsonl(out / "results.jsonl")) == [
        "large/img_0000.jpg", "large/img_0001.jpg", "photos/img_0000.jpg", "photos/img_0001.jpg",
        "photos/img_0002.jpg"]
    code, output = run_cli(["run", str(shop / "large"), "--out", str(out), "-q"], env, monkeypatch)
    assert code == 0, output
    # The latest run's inputs only, measured from the folder's one base (shop, recorded by the first run).
    rows = read_jsonl(out / "results.jsonl")
    assert [r["path"] for r in rows] == ["large/img_0000.jpg", "large/img_0001.jpg"]
    assert "2 files: ok 2" in output
    assert f"paths relative to {shop}" in output
    csv_lines = (out / "results.csv").read_text(encoding="utf-8-sig").splitlines()
    assert len(csv_lines) == 1 + 2
    code, status = run_cli(["status", "--out", str(out)], {}, monkeypatch)
    assert "files 2: ok 2" in status and str(shop) in status
    code, status = run_cli(["status", "--out", str(out), "--json"], {}, monkeypatch)
    report = json.loads(status)
    assert report["files"] == 2 and report["path_base"] == str(shop)
    assert report["review"]["reviewed"] + report["review"]["not_reviewed"] == 2  # the same files, every line
    # Every file the folder has seen, each path from that same base.
    code, output = run_cli(["export", "--out", str(out), "--all"], {}, monkeypatch)
    assert code == 0, output
    every = sorted(r["path"] for r in read_jsonl(out / "results.jsonl"))
    assert every == ["large/img_0000.jpg", "large/img_0001.jpg", "photos/img_0000.jpg", "photos/img_0001.jpg",
                     "photos/img_0002.jpg"]
    assert f"paths relative to {shop}" in output


def test_a_later_run_outside_the_base_stays_unambiguous(tmp_path, monkeypatch, fake_anthropic):
    from imagegen import read_jsonl

    shop = _shop(tmp_path)
    make_images(tmp_path / "other", 1)
    out = tmp_path / "o"
    assert run_cli(["run", str(shop / "photos"), "--out", str(out), "-q"], fake_anthropic.env(), monkeypatch)[0] == 0
    assert run_cli(["run", str(tmp_path / "other"), "--out", str(out), "-q"], fake_anthropic.env(),
                   monkeypatch)[0] == 0
    assert [r["path"] for r in read_jsonl(out / "results.jsonl")] == ["../../other/img_0000.jpg"]


# -- item 4: a stop before discovery ends ----------------------------------------------------------------

def test_a_bad_key_reports_every_input_file_pending(tmp_path, monkeypatch, fake_anthropic):
    from imagegen import read_jsonl

    make_images(tmp_path / "many", 40)
    out = tmp_path / "o"
    env = {**fake_anthropic.env(), "ANTHROPIC_API_KEY": "sk-ant-wrong-key"}
    code, output = run_cli(["run", str(tmp_path / "many"), "--out", str(out), "--workers", "1", "-q"], env,
                           monkeypatch)
    assert code == 2, output
    assert "40 files: pending 40" in output
    code, status = run_cli(["status", "--out", str(out)], {}, monkeypatch)
    assert "files 40: pending 40" in status
    rows = read_jsonl(out / "results.jsonl")  # the files agree: every input, each still to do
    assert len(rows) == 40 and {r["status"] for r in rows} == {"pending"}
    # A later run of fewer inputs is what results and status then cover (not the earlier run's pending rows).
    code, output = run_cli(["run", str(tmp_path / "many" / "img_000[0-2].jpg"), "--out", str(out), "-q"],
                           fake_anthropic.env(), monkeypatch)
    assert code == 0, output
    assert "3 files: ok 3" in output
    code, status = run_cli(["status", "--out", str(out)], {}, monkeypatch)
    assert "files 3: ok 3" in status
    assert [r["status"] for r in read_jsonl(out / "results.jsonl")] == ["ok"] * 3


def test_retry_works_on_the_failures_status_shows(tmp_path, monkeypatch, fake_openai_factory):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    broken = fake_openai_factory(p_503=1.0)
    healthy = fake_openai_factory()
    make_images(tmp_path / "a", 2)
    make_images(tmp_path / "b", 3, size=(300, 250))
    out = tmp_path / "o"
    for folder in ("a", "b"):
        code, output = run_cli(["run", str(tmp_path / folder), "--out", str(out), "--provider", "openai", "--model",
                                "glm-4v-9b", "--base-url", broken.base_url, "--max-attempts", "1", "-q"], {},
                               monkeypatch)
        assert code == 1, output
    code, status = run_cli(["status", "--out", str(out)], {}, monkeypatch)
    assert "files 3: failed 3" in status
    code, output = run_cli(["retry", "--out", str(out), "--base-url", healthy.base_url, "-q"], {}, monkeypatch)
    assert code == 0, output
    assert "retrying 3 images" in output and healthy.stats.requests == 3


# -- item 3: what this run did, what earlier runs did ---------------------------------------------------

def test_copies_on_a_first_run_are_not_earlier_runs(tmp_path, monkeypatch, fake_anthropic):
    import shutil

    made = make_images(tmp_path / "in", 4)
    for i, name in enumerate(sorted(made)):  # byte-identical copies, discovered after their originals
        shutil.copy(tmp_path / "in" / name, tmp_path / "in" / f"zz_copy_{i}.jpg")
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--concurrency", "1"],
                           fake_anthropic.env(), monkeypatch)
    assert code == 0, output
    assert "8 files: ok 8" in output
    assert "earlier runs" not in output and "done before" not in output


def test_a_resumed_batch_run_counts_what_it_collected_as_its_own(tmp_path, monkeypatch, fake_anthropic_factory):
    fake = fake_anthropic_factory(batch_processing_s=0.3)
    make_images(tmp_path / "in", 6)
    args = ["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--mode", "batch", "--poll-interval", "0.05"]
    code, output = run_cli([*args, "--detach", "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    code, output = run_cli(args, fake.env(), monkeypatch)  # collects all six answers: this run's work
    assert code == 0, output
    assert "6 files: ok 6" in output
    assert "earlier runs" not in output and "done before" not in output
    code, output = run_cli(args, fake.env(), monkeypatch)  # nothing left: every answer is an earlier run's
    assert "6 of 6 files already done by earlier runs" in output


# -- item 6: target switches --------------------------------------------------------------------------

def _sheet_target(path) -> str:
    """The text of the contact sheet's target line, as a browser shows it (parsed, entities decoded)."""
    from lxml import html

    found = html.parse(str(path)).getroot().xpath('//*[@id="target"]')
    assert found, "the contact sheet names no target"
    return " ".join(found[0].text_content().split())


def test_a_switch_says_what_was_written_and_sheets_name_their_target(tmp_path, monkeypatch, fake_anthropic):
    import datetime

    make_images(tmp_path / "in", 2)
    out = tmp_path / "o"
    base = ["run", str(tmp_path / "in"), "--out", str(out), "-q"]
    code, output = run_cli([*base, "--lang", "zh", "--format", "csv,jsonl,html"], fake_anthropic.env(), monkeypatch)
    assert code == 0, output
    first = _sheet_target(out / "contact-sheet.html")
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    assert all(word in first for word in ("ecommerce", "zh", "anthropic", "claude-haiku-5-5", today)), first

    code, output = run_cli([*base, "--lang", "zh", "--model", "claude-sonnet-5-5", "--format", "xmp"],
                           fake_anthropic.env(), monkeypatch)
    assert code == 0, output
    # Nothing in --out was written for the new target: no message may say results.* hold it.
    assert "now hold" not in output
    assert "claude-sonnet-5-5" in output and "xmp" in output
    assert "contact-sheet.html" in output and "still" in output  # the root sheet still shows the first target
    assert "claude-haiku-5-5" in _sheet_target(out / "contact-sheet.html")
    kept = out / "targets" / "ecommerce-zh--claude-haiku-5-5" / "contact-sheet.html"
    assert "claude-haiku-5-5" in _sheet_target(kept)


def test_several_inputs_are_measured_from_their_common_folder(tmp_path, monkeypatch, fake_anthropic):
    from imagegen import read_jsonl

    make_images(tmp_path / "data" / "shopA", 1)
    make_images(tmp_path / "data" / "shopB", 1, size=(300, 260))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # not the inputs' folder: no ../ paths for that
    code, output = run_cli(["run", str(tmp_path / "data" / "shopA"), str(tmp_path / "data" / "shopB"), "--out",
                            str(tmp_path / "o"), "-q"], fake_anthropic.env(), monkeypatch)
    assert code == 0, output
    assert [r["path"] for r in read_jsonl(tmp_path / "o" / "results.jsonl")] == ["shopA/img_0000.jpg",
                                                                                  "shopB/img_0000.jpg"]
