"""Several presets/models in one --out: every target's results stay retrievable (issue 9 item 2)."""

from __future__ import annotations

import csv
import json

from imagegen import make_images, read_jsonl, run_cli


def _csv_header(path) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return next(csv.reader(f))


def test_second_preset_keeps_the_first_retrievable(tmp_path, fake_anthropic, monkeypatch):
    make_images(tmp_path / "in", 3)
    out = tmp_path / "o"
    env = fake_anthropic.env()
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q"], env, monkeypatch)
    assert code == 0, output
    assert "description" in _csv_header(out / "results.csv")  # ecommerce columns
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--preset", "caption", "-q"], env,
                           monkeypatch)
    assert code == 0, output
    # the run says what the default file names now hold and where the other target's results are
    assert "ecommerce" in output and "results.csv" in output and "targets/ecommerce--" in output
    assert "short_caption" in _csv_header(out / "results.csv")
    kept = next((out / "targets").glob("ecommerce--*"))
    assert "description" in _csv_header(kept / "results.csv")
    assert len(read_jsonl(kept / "results.jsonl")) == 3

    # export and status select a target by preset (and model)
    for path in kept.iterdir():
        path.unlink()
    code, output = run_cli(["export", "--out", str(out), "--preset", "ecommerce"], env, monkeypatch)
    assert code == 0, output
    assert {r["preset"] for r in read_jsonl(kept / "results.jsonl")} == {"ecommerce"}
    assert "short_caption" in _csv_header(out / "results.csv")  # the latest target's files are untouched

    code, output = run_cli(["status", "--out", str(out), "--json", "--preset", "ecommerce"], env, monkeypatch)
    assert code == 0, output
    status = json.loads(output)
    assert status["target"]["preset_name"] == "ecommerce"
    assert status["by_status"] == {"ok": 3} and status["cost_usd"] > 0
    assert sorted(t["preset_name"] for t in status["targets"]) == ["caption", "ecommerce"]
    code, output = run_cli(["status", "--out", str(out)], env, monkeypatch)
    assert code == 0, output
    assert output.splitlines()[0].startswith("preset caption")
    assert "ecommerce" in output  # other targets are listed

    code, output = run_cli(["export", "--out", str(out), "--preset", "ocr"], env, monkeypatch)
    assert code == 2
    assert "caption" in output and "ecommerce" in output and len(output.strip().splitlines()) == 1


def test_languages_are_targets_of_their_own(tmp_path, fake_anthropic, monkeypatch):
    """Two runs that differ only in --lang are two targets: the first's paid answers stay retrievable, status
    lists both, and status/export select either with --lang."""
    make_images(tmp_path / "in", 3)
    out = tmp_path / "o"
    env = fake_anthropic.env()
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--lang", "ZH", "-q"], env,
                           monkeypatch)
    assert code == 0, output
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q"], env, monkeypatch)
    assert code == 0, output
    # The run names the other target's folder and how to rebuild it, language included.
    assert "targets/ecommerce-zh--" in output and "--lang zh" in output
    kept = next((out / "targets").glob("ecommerce-zh--*"))
    rows = read_jsonl(kept / "results.jsonl")
    assert len(rows) == 3 and {r["status"] for r in rows} == {"ok"}  # paid answers, not pending rows
    code, output = run_cli(["status", "--out", str(out), "--json"], env, monkeypatch)
    assert code == 0, output
    status = json.loads(output)
    assert sorted(str(t.get("lang")) for t in status["targets"]) == ["None", "zh"]
    assert status["target"].get("lang") is None  # the latest
    code, output = run_cli(["status", "--out", str(out), "--json", "--lang", "zh"], env, monkeypatch)
    assert code == 0, output
    assert json.loads(output)["target"]["lang"] == "zh" and json.loads(output)["by_status"] == {"ok": 3}
    for path in kept.iterdir():
        path.unlink()
    code, output = run_cli(["export", "--out", str(out), "--lang", "zh"], env, monkeypatch)
    assert code == 0, output
    assert len(read_jsonl(kept / "results.jsonl")) == 3
    code, output = run_cli(["export", "--out", str(out), "--lang", "ja"], env, monkeypatch)
    assert code == 2 and "--lang ja" in output and "ecommerce (zh)/" in output
