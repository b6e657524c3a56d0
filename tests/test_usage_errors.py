"""Usage and configuration errors: one sentence, exit 2, nothing created, never a traceback (issue 9 items 7-9)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from imagegen import make_images, one_sentence, read_jsonl, run_cli

SECRET = "test-key-not-real-SECRET-000000"


def test_out_that_is_a_file_is_a_usage_error(tmp_path, monkeypatch):
    make_images(tmp_path / "in", 1)
    (tmp_path / "taken").write_text("x")
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "taken"), "--dry-run", "-q"],
                           {}, monkeypatch)
    assert code == 2
    assert "is a file" in one_sentence(output)


def test_impossible_out_is_a_usage_error(tmp_path, monkeypatch):
    make_images(tmp_path / "in", 1)
    (tmp_path / "f").write_text("x")
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "f" / "sub"), "--dry-run", "-q"],
                           {}, monkeypatch)
    assert code == 2
    assert "--out" in one_sentence(output)


def test_read_only_out_is_a_usage_error(tmp_path, monkeypatch):
    import imgtag.store.db as db

    make_images(tmp_path / "in", 1)
    out = tmp_path / "ro"

    def refuse(self, *a, **k):  # root ignores chmod, so the filesystem's answer is simulated
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(db.Path, "mkdir", refuse)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--dry-run", "-q"], {}, monkeypatch)
    assert code == 2
    assert "Permission denied" in one_sentence(output)


def test_categories_from_a_missing_file(tmp_path, monkeypatch):
    make_images(tmp_path / "in", 1)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--dry-run", "-q",
                            "--categories", "@" + str(tmp_path / "missing.txt")], {}, monkeypatch)
    assert code == 2
    assert "missing.txt" in one_sentence(output)
    assert not (tmp_path / "o").exists()


def test_imgtag_toml_list_of_categories_works(tmp_path, monkeypatch, fake_anthropic):
    make_images(tmp_path / "in", 1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgtag.toml").write_text('categories = ["上衣", "裤子"]\nlang = "zh"\n', encoding="utf-8")
    code, output = run_cli(["run", "in", "--out", "o", "-q"], fake_anthropic.env(), monkeypatch)
    assert code == 0, output
    db = sqlite3.connect(tmp_path / "o" / "imgtag.db")
    (meta,) = db.execute("SELECT value FROM meta WHERE key='target'").fetchone()
    assert '"上衣"' in meta and '"裤子"' in meta
    assert read_jsonl(tmp_path / "o" / "results.jsonl")[0]["status"] == "ok"


def test_imgtag_toml_unknown_key_has_a_did_you_mean(tmp_path, monkeypatch):
    make_images(tmp_path / "in", 1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgtag.toml").write_text('modle = "claude-haiku-4-5"\n', encoding="utf-8")
    code, output = run_cli(["run", "in", "--out", "o", "--dry-run", "-q"], {}, monkeypatch)
    assert code == 2
    line = one_sentence(output)
    assert "modle" in line and "'model'" in line
    assert not (tmp_path / "o").exists()


# A wrong type in imgtag.toml: tests/test_project_settings.py::test_imgtag_toml_bad_values_are_one_sentence


# -- item 8: inputs that match nothing -------------------------------------------------------------

@pytest.mark.parametrize("command", ["run", "scan"])
def test_no_such_dir_creates_nothing(tmp_path, monkeypatch, command, fake_anthropic):
    monkeypatch.chdir(tmp_path)
    code, output = run_cli([command, "no-such-dir", "-q"] if command == "run" else [command, "no-such-dir"],
                           fake_anthropic.env(), monkeypatch)
    assert code == 2
    assert "no-such-dir" in one_sentence(output)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("command", ["run", "scan"])
def test_empty_folder_creates_nothing(tmp_path, monkeypatch, command, fake_anthropic):
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    args = [command, "empty", "--out", "o"] + (["-q"] if command == "run" else [])
    code, output = run_cli(args, fake_anthropic.env(), monkeypatch)
    assert code == 2
    assert "empty" in one_sentence(output)
    assert sorted(os.listdir(tmp_path)) == ["empty"]


def test_scan_does_not_create_a_store_unless_asked(tmp_path, monkeypatch):
    make_images(tmp_path / "in", 2)
    monkeypatch.chdir(tmp_path)
    code, output = run_cli(["scan", "in"], {}, monkeypatch)
    assert code == 0, output
    assert sorted(os.listdir(tmp_path)) == ["in"]
    code, output = run_cli(["scan", "in", "--out", "o"], {}, monkeypatch)
    assert code == 0, output
    assert (tmp_path / "o" / "imgtag.db").exists()


# -- item 9: a key with whitespace -------------------------------------------------------------------

@pytest.mark.parametrize("key", [SECRET + "\n", " " + SECRET, "test-key not-real-SECRET0"])
def test_key_with_whitespace_is_refused_at_once(tmp_path, monkeypatch, fake_anthropic, key):
    make_images(tmp_path / "in", 2)
    env = fake_anthropic.env()
    env["ANTHROPIC_API_KEY"] = key
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "-q"], env, monkeypatch)
    assert code == 2
    line = one_sentence(output)
    assert "ANTHROPIC_API_KEY" in line and "whitespace" in line
    assert "SECRET" not in output
    assert fake_anthropic.stats.messages_requests == 0
    assert not (tmp_path / "o").exists()


def test_local_request_construction_error_is_fatal(fake_anthropic):
    import asyncio

    from imgtag.presets import load_preset
    from imgtag.pricing.catalogue import catalogue
    from imgtag.providers.anthropic_provider import AnthropicProvider
    from imgtag.providers.base import Fatal, ImageInput, RequestOptions

    provider = AnthropicProvider(api_key=SECRET, base_url=fake_anthropic.base_url)
    # A header value no HTTP library will put on the wire: the request fails before it leaves the process.
    provider.client = provider.client.with_options(default_headers={"x-broken": "a\nb"})
    options = RequestOptions(load_preset("caption"), catalogue().get("claude-haiku-4-5"), 300)

    async def call() -> None:
        try:
            await provider.describe(ImageInput(b"\xff\xd8\xff", "image/jpeg"), options)
        finally:
            await provider.aclose()

    with pytest.raises(Fatal) as info:
        asyncio.run(call())
    assert SECRET not in info.value.message
    assert fake_anthropic.stats.messages_requests == 0


def test_missing_key_is_one_line_in_a_real_process(tmp_path):
    make_images(tmp_path / "in", 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "IMGTAG_"))}
    proc = subprocess.run([sys.executable, "-m", "imgtag", "run", str(tmp_path / "in"), "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert "ANTHROPIC_API_KEY" in one_sentence(proc.stderr + proc.stdout)
    assert not Path(tmp_path / "o").exists()
