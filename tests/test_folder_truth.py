"""What the output folder, the summary and `status` report (issue 17 items 1-6): counts that add up, one path
base, nothing written by a refused or read-only command, messages that say what was written."""

from __future__ import annotations

import dataclasses

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
