"""Issue 16 item 2 and issue 17 items 12 and 16: a price nobody knows is shown as unknown everywhere (never $0),
the model's name is checked wherever it is named, imgtag.toml prices win over the catalogue, and a free local
model is declared once."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from imagegen import make_images, one_sentence, read_jsonl, run_cli
from imgtag.cli.commands import app

UNPRICED = "my-gateway-alias"


def status_of(out: Path, *flags: str) -> Any:
    result = CliRunner().invoke(app, ["status", "--out", str(out), *flags], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in flags else result.stdout


def test_an_unpriced_models_cost_is_unknown_on_every_screen_and_in_every_file(
        tmp_path: Path, fake_anthropic: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import openpyxl
    import pyarrow.parquet as pq

    make_images(tmp_path / "in", 3)
    (tmp_path / "in" / "tiny.jpg").write_bytes((tmp_path / "in" / "img_0000.jpg").read_bytes()[:40])  # skipped
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--model", UNPRICED,
                            "--format", "csv,jsonl,xlsx,parquet"], fake_anthropic.env(), monkeypatch)
    assert code == 1, output  # the truncated file failed; the three images were answered
    progress = [line for line in output.splitlines() if "files |" in line or (" files" in line and "ok 3" in line)]
    assert progress and all("$0.00" not in line for line in output.splitlines()), output
    assert any("cost unknown" in line for line in progress), output
    summary = next(line for line in output.splitlines() if line.startswith("4 files"))
    assert "cost unknown" in summary, summary
    # status: text and JSON
    text = status_of(out)
    assert "$0.00" not in text and "spent to date unknown" in text, text
    report = status_of(out, "--json")
    assert report["cost_usd"] is None and report["targets"][0]["cost_usd"] is None
    # every export: cost_usd is null where tokens were paid at an unknown price, 0 where nothing was paid
    rows = {r["path"]: r for r in read_jsonl(out / "results.jsonl")}
    answered = [r for r in rows.values() if r["status"] == "ok"]
    assert len(answered) == 3 and all(r["cost_usd"] is None and r["usage"]["input_tokens"] > 0 for r in answered)
    assert rows["tiny.jpg"]["cost_usd"] == 0.0
    with (out / "results.csv").open(encoding="utf-8-sig", newline="") as fh:
        table = {r["path"]: r for r in csv.DictReader(fh)}
    assert [table[r["path"]]["cost_usd"] for r in answered] == ["", "", ""]
    sheet = openpyxl.load_workbook(out / "results.xlsx", read_only=True).worksheets[0]
    cells = list(sheet.iter_rows(values_only=True))
    names = next(row for row in cells if "cost_usd" in row or "path" in row)
    column = names.index("cost_usd") if "cost_usd" in names else None
    if column is None:  # localized headers: the machine names are the second header row
        names = next(row for row in cells if "cost_usd" in row)
        column = names.index("cost_usd")
    path_col = names.index("path")
    by_path = {row[path_col]: row[column] for row in cells if row[path_col] in rows}
    assert [by_path[r["path"]] for r in answered] == [None, None, None]
    parquet = {r["path"]: r["cost_usd"] for r in pq.read_table(out / "results.parquet").to_pylist()}
    assert [parquet[r["path"]] for r in answered] == [None, None, None] and parquet["tiny.jpg"] == 0.0


def test_a_dry_run_and_scan_check_the_model_name_against_the_providers_list(
        tmp_path: Path, fake_anthropic: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    make_images(tmp_path / "in", 2)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--model", "claude-haiku-5.5",
                            "--dry-run"], fake_anthropic.env(), monkeypatch)
    assert code == 0, output
    assert "did you mean 'claude-haiku-5-5'?" in output and "anthropic model list" in output, output
    assert fake_anthropic.stats.models_requests == 1 and fake_anthropic.stats.messages_requests == 0
    code, output = run_cli(["scan", str(tmp_path / "in"), "--model", "claude-haiku-5.5"], fake_anthropic.env(),
                           monkeypatch)
    assert code == 0, output
    assert "did you mean 'claude-haiku-5-5'?" in output, output
    assert fake_anthropic.stats.models_requests == 2
    # A model the catalogue knows needs no list.
    code, output = run_cli(["scan", str(tmp_path / "in"), "--model", "claude-haiku-5-5"], fake_anthropic.env(),
                           monkeypatch)
    assert code == 0 and fake_anthropic.stats.models_requests == 2 and "did you mean" not in output


def test_a_dry_run_without_credentials_checks_the_name_against_the_catalogue(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_images(tmp_path / "in", 1)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--model", "claude-sonet-4-6",
                            "--dry-run"], {}, monkeypatch)
    assert code == 0, output
    assert "not in imgtag's catalogue (did you mean 'claude-sonnet-4-6'?)" in output, output


def scan_estimate(folder: Path, model: str, *flags: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["scan", str(folder), "--json", "--model", model, *flags],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["selected_model"] == model
    return next(e for e in summary["estimates"] if e["model"] == model)


def test_imgtag_toml_prices_override_the_catalogue(tmp_path: Path, fake_anthropic: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    make_images(tmp_path / "in", 2)
    monkeypatch.chdir(tmp_path)
    before = scan_estimate(tmp_path / "in", "claude-haiku-4-5")
    (tmp_path / "imgtag.toml").write_text('[models."claude-haiku-4-5"]\ninput = 100\noutput = 100\n',
                                          encoding="utf-8")
    after = scan_estimate(tmp_path / "in", "claude-haiku-4-5")
    tokens = after["sync"]
    # Every token at $100 per million (no cached prefix on Haiku 4.5: its caching minimum is out of reach).
    assert tokens["cache_write_tokens"] == tokens["cache_read_tokens"] == 0
    assert after["standard_usd"] == pytest.approx((tokens["input_tokens"] + tokens["output_tokens"]) * 100 / 1e6,
                                                  rel=1e-4)
    assert after["standard_usd"] > 30 * before["standard_usd"]
    assert after["batch_usd"] == pytest.approx(after["standard_usd"] / 2, rel=1e-4)  # the catalogue's batch ratio
    # and the run bills at those prices
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--model", "claude-haiku-4-5",
                            "-q"], fake_anthropic.env(), monkeypatch)
    assert code == 0, output
    s = fake_anthropic.stats
    assert status_of(tmp_path / "o", "--json")["cost_usd"] == pytest.approx(
        (s.input_tokens + s.output_tokens) * 100 / 1e6, rel=1e-6)


def test_an_unpriced_model_on_a_local_server_is_unknown_not_free(tmp_path: Path, fake_openai_factory: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fake = fake_openai_factory(variant="vllm", models=(UNPRICED,))
    make_images(tmp_path / "in", 3)
    base = ["run", str(tmp_path / "in"), "--provider", "openai", "--base-url", fake.base_url, "--model", UNPRICED]
    # A gateway on 127.0.0.1 may forward to a paid API: --budget cannot be held without prices.
    code, output = run_cli([*base, "--out", str(tmp_path / "b"), "--budget", "0.0001"], {}, monkeypatch)
    assert code == 2, output
    line = one_sentence(output)
    assert "--budget" in line and "unknown" in line and "imgtag.toml" in line and "--price-in" in line
    assert fake.stats.requests == 0 and not (tmp_path / "b").exists()
    code, output = run_cli([*base, "--out", str(tmp_path / "o")], {}, monkeypatch)
    assert code == 0, output
    assert "cost unknown" in output and "$0.00" not in output and "counted as $0" not in output
    assert all(r["cost_usd"] is None for r in read_jsonl(tmp_path / "o" / "results.jsonl"))


@pytest.mark.parametrize("how", ["flags", "imgtag.toml"])
def test_a_free_local_model_is_declared_once(tmp_path: Path, fake_openai_factory: Any,
                                             monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    monkeypatch.chdir(tmp_path)
    fake = fake_openai_factory(variant="vllm", models=("glm-4v-9b",))
    make_images(tmp_path / "in", 2)
    flags = ["--price-in", "0", "--price-out", "0"] if how == "flags" else []
    if how == "imgtag.toml":
        (tmp_path / "imgtag.toml").write_text('[models."glm-4v-9b"]\ninput = 0\noutput = 0\n', encoding="utf-8")
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--provider", "openai",
                            "--base-url", fake.base_url, "--model", "glm-4v-9b", "--budget", "0.01", *flags],
                           {}, monkeypatch)
    assert code == 0, output
    assert "$0.00" in output and "cost unknown" not in output
    assert all(r["cost_usd"] == 0.0 for r in read_jsonl(tmp_path / "o" / "results.jsonl"))


def test_scan_takes_the_provider_and_estimates_the_chosen_model(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    make_images(tmp_path / "in", 2)
    unknown = scan_estimate(tmp_path / "in", "glm-4v-9b", "--provider", "openai")
    assert unknown["standard_usd"] is None and unknown["batch_usd"] is None
    (tmp_path / "imgtag.toml").write_text('[models."glm-4v-9b"]\ninput = 0\noutput = 0\n', encoding="utf-8")
    free = scan_estimate(tmp_path / "in", "glm-4v-9b", "--provider", "openai")
    assert free["standard_usd"] == 0.0
    openai = scan_estimate(tmp_path / "in", "gpt-4.1-mini", "--provider", "openai")
    assert openai["standard_usd"] > 0
    text = CliRunner().invoke(app, ["scan", str(tmp_path / "in"), "--provider", "openai", "--model", "gpt-4.1-mini"],
                              env={"COLUMNS": "120"}, catch_exceptions=False).stdout
    assert "gpt-4.1-mini" in text and "claude-haiku-5-5" not in text, text


def test_the_run_without_model_shows_each_providers_default_in_help(monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = run_cli(["run", "--help"], {}, monkeypatch)
    assert code == 0
    flat = " ".join(output.split())
    assert "claude-haiku-5-5 for anthropic" in flat and "gpt-4.1-mini for openai" in flat, flat
    for variable in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "IMAGEDESCRIBER_API_KEY", "IMAGEDESCRIBER_BASE_URL"):
        assert variable in flat, variable
    # The help names each provider's real default (the help is static text: it must follow the providers).
    from imgtag.pricing.catalogue import catalogue
    from imgtag.providers import provider_class

    for name in ("openai", "imagedescriber"):
        assert f"{provider_class(name).default_model} for {name}" in flat, name
    assert f"{catalogue().default_model} for anthropic" in flat
    code, output = run_cli(["scan", "--help"], {}, monkeypatch)
    assert "gpt-4.1-mini for openai" in " ".join(output.split()) and "--provider" in output


@pytest.mark.parametrize("flag, typo, meant", [("--preset", "ecomerce", "ecommerce"),
                                               ("--provider", "anthropc", "anthropic"),
                                               ("--provider", "opneai", "openai")])
def test_preset_and_provider_typos_get_a_did_you_mean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      flag: str, typo: str, meant: str) -> None:
    make_images(tmp_path / "in", 1)
    for command in (["run", "--dry-run", "--out", str(tmp_path / "o")], ["scan"]):
        code, output = run_cli([command[0], str(tmp_path / "in"), *command[1:], flag, typo], {}, monkeypatch)
        assert code == 2, output
        assert f"(did you mean {meant!r}?)" in one_sentence(output), output


def test_a_store_of_an_earlier_version_reads_its_unpriced_answers_as_unknown(
        tmp_path: Path, fake_anthropic: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before unknown prices were recorded, paid tokens of an unpriced model were stored at $0: the migration
    reads an answer with tokens and no cost (and no credits) as unknown."""
    from imgtag.store.migrations import MIGRATIONS, _v13_cost_unknown

    make_images(tmp_path / "in", 2)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--model", UNPRICED, "-q"],
                           fake_anthropic.env(), monkeypatch)
    assert code == 0, output
    assert status_of(out, "--json")["cost_usd"] is None
    db = sqlite3.connect(out / "imgtag.db")
    with db:  # back to the version before the migration (and the ones after it: _v16_rerun_state's tables)
        for (trigger,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            db.execute(f"DROP TRIGGER {trigger}")
        db.execute("DROP TABLE near_index")
        db.execute("DROP TABLE result_changes")
        for table in ("attempts", "jobs"):
            db.execute(f"ALTER TABLE {table} DROP COLUMN cost_unknown")
        db.execute(f"PRAGMA user_version = {MIGRATIONS.index(_v13_cost_unknown)}")
    db.close()
    report = status_of(out, "--json")
    assert report["cost_usd"] is None and report["input_tokens"] > 0


def test_status_and_export_suggest_the_model_a_folder_holds(tmp_path: Path, fake_anthropic: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    make_images(tmp_path / "in", 1)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--model", "claude-haiku-5-5", "-q"],
                           fake_anthropic.env(), monkeypatch)
    assert code == 0, output
    for command in ("status", "export"):
        code, output = run_cli([command, "--out", str(out), "--model", "claude-haiku-5.5"], {}, monkeypatch)
        assert code == 2 and "(did you mean 'claude-haiku-5-5'?)" in one_sentence(output), output


def test_one_image_is_singular_in_the_estimate_lines():
    """`imgtag status` on a one-image folder said 'estimate $0.00025 for 1 images'; --dry-run '1 images to tag'."""
    from imgtag.cli.costview import status_estimate_line

    line = status_estimate_line({"usd": 0.00025, "images": 1, "mode": "sync"}, 0.0000769)
    assert line.startswith("estimate $0.00025 for 1 image (sync, caching included)"), line
    assert "for 1,200 images" in status_estimate_line({"usd": 0.3, "images": 1200, "mode": "batch"}, None)


def test_requests_refused_before_any_token_cost_nothing_on_every_screen_and_in_every_file(
        tmp_path: Path, fake_openai_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request refused (a server without vision: 400, no usage) with a model that has no prices: the rows and
    `status` said $0 (nothing was billed: README's results contract) while the summary said "cost unknown". One
    rule now: unknown only when tokens were paid at prices nobody gave."""
    fake = fake_openai_factory(variant="vllm", models=(UNPRICED,), vision=False)
    make_images(tmp_path / "in", 3)
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q", "--provider", "openai",
                            "--base-url", fake.base_url, "--model", UNPRICED], {}, monkeypatch)
    assert fake.stats.requests > 0 and code == 2, output  # the server's "no" stops the run, images pending
    summary = next(line for line in output.splitlines() if line.startswith("3 files"))
    assert "0 in / 0 out tokens, $0.00" in summary and "unknown" not in summary, output
    assert "spent to date $0.00" in status_of(out)
    assert status_of(out, "--json")["cost_usd"] == 0.0
    assert [r["cost_usd"] for r in read_jsonl(out / "results.jsonl")] == [0.0] * 3


def test_scan_claims_no_caching_minimum_for_a_model_it_knows_nothing_about(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """scan said "not cached: below the model's caching minimum" for a local or unknown model, whose minimum (and
    whether its server caches at all) imgtag does not know; a model of its tables keeps its word."""
    monkeypatch.chdir(tmp_path)
    make_images(tmp_path / "in", 2)

    def per_image(model: str, *flags: str) -> str:
        result = CliRunner().invoke(app, ["scan", "in", "--model", model, *flags], env={"COLUMNS": "80"},
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return " ".join(result.stdout[result.stdout.index("per image on"):].split())

    (tmp_path / "imgtag.toml").write_text('[models."priced-vlm"]\ninput = 1\noutput = 2\n', encoding="utf-8")
    for model, flags in (("glm-4v-9b", ("--provider", "openai")), ("priced-vlm", ("--provider", "openai")),
                         (UNPRICED, ())):
        line = per_image(model, *flags)
        assert "(prompt + schema: caching unknown for this model)" in line and "minimum" not in line, line
    assert "(prompt + schema not cached: below the model's caching minimum)" in per_image("claude-haiku-4-5")
    assert "(prompt + schema cached: read at 0.1x" in per_image("claude-haiku-5-5")
    assert scan_estimate(tmp_path / "in", "glm-4v-9b", "--provider", "openai")["caching_known"] is False
