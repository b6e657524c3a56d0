"""imgtag.toml as project settings (issue 17 item 17): a folder that is always run the same way says so once, and
`imgtag retry` takes the run flags that decide where and how fast it asks and how much it may spend."""

from __future__ import annotations

import sqlite3

import pytest

from imagegen import make_images, one_sentence, read_jsonl, run_cli


@pytest.fixture
def no_openai_env(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def test_imgtag_toml_sets_base_url_formats_concurrency_and_budget(tmp_path, monkeypatch, fake_openai_factory,
                                                                   no_openai_env):
    fake = fake_openai_factory(latency_s=0.05)
    make_images(tmp_path / "in", 8)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgtag.toml").write_text(
        f'provider = "openai"\nmodel = "glm-4v-9b"\nbase_url = "{fake.base_url}"\nmode = "sync"\n'
        'formats = ["csv", "jsonl", "xlsx"]\nconcurrency = 2\nbudget = 5\n'
        # A local model is free only when said so (issue 16.2): --budget needs prices, and 0 is a price.
        '[models."glm-4v-9b"]\ninput = 0\noutput = 0\n', encoding="utf-8")
    code, output = run_cli(["run", "in", "--out", "o", "-q"], {}, monkeypatch)
    assert code == 0, output
    assert fake.stats.requests == 8
    assert fake.stats.peak_in_flight <= 2  # the adaptive limit alone would start at 4
    assert (tmp_path / "o" / "results.xlsx").is_file()
    assert all(r["status"] == "ok" for r in read_jsonl(tmp_path / "o" / "results.jsonl"))


def dry_run_with_toml(tmp_path, monkeypatch, text: str, *flags: str) -> tuple[int, str]:
    """`imgtag run in --dry-run` in a folder whose imgtag.toml holds `text`."""
    make_images(tmp_path / "in", 1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgtag.toml").write_text(text, encoding="utf-8")
    return run_cli(["run", "in", "--out", "o", "--dry-run", "-q", *flags], {}, monkeypatch)


def test_imgtag_toml_budget_is_checked_like_the_flag(tmp_path, monkeypatch):
    code, output = dry_run_with_toml(tmp_path, monkeypatch, 'model = "claude-unpriced-9"\nbudget = 1.5\n')
    assert code == 2
    # named where the user set it: there is no --budget on this command line to change
    assert "imgtag.toml budget cannot be enforced" in one_sentence(output)
    assert not (tmp_path / "o").exists()


def test_imgtag_toml_mode_batch_is_used(tmp_path, monkeypatch):
    text = 'provider = "imagedescriber"\npreset = "keywords"\nmode = "batch"\n'
    code, output = dry_run_with_toml(tmp_path, monkeypatch, text)
    assert code == 2
    assert "batch" in one_sentence(output)
    code, output = dry_run_with_toml(tmp_path, monkeypatch, text, "--mode", "sync")  # the flag wins over the file
    assert code == 0, output


@pytest.mark.parametrize(("text", "words"), [
    ("model = 3", ("'model'", "a model id")),
    ('mode = "fast"', ("'mode'", "sync or batch")),
    ("concurrency = 0", ("'concurrency'", "at least 1")),
    ('concurrency = "8"', ("'concurrency'", "whole number")),
    ("budget = -2", ("'budget'", "above 0")),
    ("budget = true", ("'budget'", "amount")),
    ('formats = "csv,xslx"', ("'formats'", "xslx")),
    ("base_url = 8000", ("'base_url'", "URL")),
    ('[models."glm-4v-9b"]\nprice_in = 1', ('[models."glm-4v-9b"]', "price_in", "input")),
    ('[models."glm-4v-9b"]\ninput = 1\noutptu = 2', ("outptu", "output")),
])
def test_imgtag_toml_bad_values_are_one_sentence(tmp_path, monkeypatch, text, words):
    code, output = dry_run_with_toml(tmp_path, monkeypatch, text + "\n")
    assert code == 2
    line = one_sentence(output)
    assert line.startswith("imgtag: imgtag.toml: ")
    assert all(w in line for w in words), line
    assert not (tmp_path / "o").exists()


def test_retry_takes_base_url_concurrency_and_budget(tmp_path, monkeypatch, fake_openai_factory, no_openai_env):
    broken = fake_openai_factory(p_503=1.0)
    healthy = fake_openai_factory(latency_s=0.05)
    make_images(tmp_path / "in", 5)
    out = tmp_path / "o"
    monkeypatch.chdir(tmp_path)  # glm-4v-9b is free here, so retry's --budget can be enforced (issue 16.2)
    (tmp_path / "imgtag.toml").write_text('[models."glm-4v-9b"]\ninput = 0\noutput = 0\n', encoding="utf-8")
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--provider", "openai", "--model",
                            "glm-4v-9b", "--base-url", broken.base_url, "--max-attempts", "1", "-q"], {}, monkeypatch)
    assert code == 1, output
    code, output = run_cli(["retry", "--out", str(out), "--budget", "-1"], {}, monkeypatch)
    assert code == 2 and "--budget" in one_sentence(output)
    code, output = run_cli(["retry", "--out", str(out), "--base-url", healthy.base_url, "--concurrency", "1",
                            "--budget", "2", "-q"], {}, monkeypatch)
    assert code == 0, output
    assert healthy.stats.requests == 5 and healthy.stats.peak_in_flight == 1
    assert [r["status"] for r in read_jsonl(out / "results.jsonl")] == ["ok"] * 5
    # The new address is the target's from now on: a later retry or status names the server that answered.
    db = sqlite3.connect(out / "imgtag.db")
    (meta,) = db.execute("SELECT value FROM meta WHERE key='target'").fetchone()
    assert healthy.base_url.split("//")[1].split("/")[0] in meta
