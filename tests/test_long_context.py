"""Issue 16 item 1: a model's long-context threshold is a rule about one request (its input + cache reads + cache
writes), never about a run's total. Estimates scale with the number of images; a packed request that really
crosses the threshold pays the long rate, and only that request."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from imagegen import make_images, run_cli
from imgtag.cli.commands import app
from imgtag.pricing.catalogue import catalogue


def scan_estimates(folder: Path, out: Path, *flags: str) -> dict[str, dict[str, Any]]:
    result = CliRunner().invoke(app, ["scan", str(folder), "--json", "--out", str(out), *flags],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return {e["model"]: e for e in json.loads(result.stdout.splitlines()[-1])["estimates"]}


def prompt_total(mode: dict[str, Any]) -> int:
    """The run's prompt tokens, summed over its requests (what the old rule compared with the threshold)."""
    return mode["input_tokens"] + mode["cache_read_tokens"] + mode["cache_write_tokens"]


def test_estimates_are_linear_in_images_for_every_catalogue_model(tmp_path: Path) -> None:
    # 640x480 photos: 504x378 at the default preset's detail, a few hundred tokens each, so 50 of them stay under
    # Haiku 5.5's 100,000-token threshold in total and 150 go over it; no single request comes near it.
    n = 50
    made = make_images(tmp_path / "all", 3 * n, size=(640, 480))
    (tmp_path / "some").mkdir()
    for name in sorted(made)[:n]:
        shutil.copy(tmp_path / "all" / name, tmp_path / "some" / name)
    small = scan_estimates(tmp_path / "some", tmp_path / "s1")
    large = scan_estimates(tmp_path / "all", tmp_path / "s2")
    assert set(small) == set(catalogue().models)
    thresholds = {m: info.prices.long_context_threshold for m, info in catalogue().models.items()
                  if info.prices is not None and info.prices.long_context_threshold}
    assert thresholds, "the catalogue has no model with a long-context threshold: this test proves nothing"
    for model, threshold in thresholds.items():
        # The run's total really crosses the threshold between the two folders (for both modes).
        for mode in ("sync", "batch"):
            assert prompt_total(small[model][mode]) < threshold < prompt_total(large[model][mode]), model
    for model in catalogue().models:
        for mode in ("sync", "batch"):
            ratio = large[model][mode]["usd"] / small[model][mode]["usd"]
            # Cost is linear in images but for the one cache write per run, which 3N images share with N.
            assert 2.7 <= ratio <= 3.15, (model, mode, ratio)
        assert large[model]["standard_usd"] == large[model]["sync"]["usd"]
        assert large[model]["batch_usd"] == large[model]["batch"]["usd"]


def usage_usd(usage: dict[str, Any], model: str, long: bool | None = None) -> float:
    """What the API bills for one response, computed here from the price table (not with imgtag's cost_usd): the
    long-context rates for every token class of a request whose prompt passes the threshold (api-facts F)."""
    p = catalogue().get(model).prices
    assert p is not None and p.long_context_threshold and p.long_input and p.long_output
    prompt = (usage["input_tokens"] + usage.get("cache_read_input_tokens", 0)
              + usage.get("cache_creation_input_tokens", 0))
    if long is None:
        long = prompt > p.long_context_threshold
    scale = p.long_input / p.input if long else 1.0
    out_rate = p.long_output if long else p.output
    writes_1h = (usage.get("cache_creation") or {}).get("ephemeral_1h_input_tokens") or 0
    writes_5m = (usage.get("cache_creation_input_tokens") or 0) - writes_1h
    return (usage["input_tokens"] * p.input * scale + usage["output_tokens"] * out_rate
            + (usage.get("cache_read_input_tokens") or 0) * p.cache_read * scale
            + (writes_5m * p.cache_write_5m + writes_1h * p.cache_write_1h) * scale) / 1e6


@pytest.mark.parametrize("mode", ["sync", "batch"])
def test_a_packed_request_over_the_threshold_pays_the_long_rate_alone(tmp_path: Path, fake_anthropic_factory: Any,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       mode: str) -> None:
    model = "claude-haiku-5-5"
    threshold = catalogue().get(model).prices.long_context_threshold  # type: ignore[union-attr]
    folder = tmp_path / "in"
    folder.mkdir()
    # Twenty large photos (each at the high tier's 4,784-token cap under --detail high) fill the first request;
    # forty medium ones (about 2,500 tokens each) the next two. A shop's long category list (in the schema, cached)
    # lifts the first request's prompt over 100,000 tokens while the others stay near 65,000.
    for i in range(20):
        Image.new("RGB", (2576, 1932), (10 + 12 * i, 90, 200 - 9 * i)).save(folder / f"a_{i:02d}.jpg", quality=80)
    make_images(tmp_path / "small", 40, size=(1600, 1200))
    for name in sorted(p.name for p in (tmp_path / "small").iterdir()):
        shutil.copy(tmp_path / "small" / name, folder / f"b_{name}")
    cats = tmp_path / "cats.txt"
    cats.write_text("\n".join(f"Home and garden / furniture line {i} / assorted items series {i}"
                              for i in range(320)), encoding="utf-8")
    # The fake's answers here are ~78 Haiku 5.5 output tokens per image; a preset states its typical answer size,
    # so the test states the fake's. Everything on the input side is estimated.
    preset = tmp_path / "shop.toml"
    preset.write_text('extends = "ecommerce"\nexpected_output_tokens = 78\n', encoding="utf-8")
    fake = fake_anthropic_factory(batch_processing_s=0.05)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(folder), "--out", str(out), "--model", model, "--detail", "high",
                            "--preset", str(preset), "--images-per-request", "20", "--categories", f"@{cats}",
                            "--mode", mode, "--poll-interval", "0.05", "-q"],
                           fake.env(), monkeypatch)
    assert code == 0, output
    usages = fake.stats.usages
    prompts = sorted(u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
                     for u in usages)
    assert len(usages) == 3 and prompts[1] < threshold < prompts[2], prompts
    half = 0.5 if mode == "batch" else 1.0  # batch: every token class at half price
    billed = half * sum(usage_usd(u, model) for u in usages)
    all_long = half * sum(usage_usd(u, model, long=True) for u in usages)
    status = json.loads(CliRunner().invoke(app, ["status", "--out", str(out), "--json"]).stdout)
    # The store bills each request by its own prompt: the long rate on the first, the standard rate on the second.
    assert status["cost_usd"] == pytest.approx(billed, rel=1e-6)
    # The estimate follows the same rule: within text-token counting of the bill. The old rule compared the run's
    # total with the threshold and priced every request at the long rate, far more than the tolerance above.
    assert status["estimate"]["usd"] == pytest.approx(billed, rel=0.05)
    assert all_long > 1.5 * billed


def test_a_batch_budget_reserves_a_pack_over_the_threshold_at_the_long_rate(
        tmp_path: Path, fake_anthropic_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(20):
        Image.new("RGB", (2576, 1932), (10 + 12 * i, 90, 200 - 9 * i)).save(folder / f"a_{i:02d}.jpg", quality=80)
    cats = tmp_path / "cats.txt"
    cats.write_text("\n".join(f"Home and garden / furniture line {i} / assorted items series {i}"
                              for i in range(320)), encoding="utf-8")
    flags = ["--model", "claude-haiku-5-5", "--detail", "high", "--images-per-request", "20", "--mode", "batch",
             "--categories", f"@{cats}", "--poll-interval", "0.05", "-q"]
    fake = fake_anthropic_factory(batch_processing_s=0.05)
    # One pack of 20 large images with a 15,000-token schema: over 100,000 prompt tokens, so about $0.033 at the
    # long batch rates. Twenty separate requests at the standard rates would be reserved at about $0.021: a
    # budget between the two must not let the pack go.
    code, output = run_cli(["run", str(folder), "--out", str(tmp_path / "out"), "--budget", "0.025", *flags],
                           fake.env(), monkeypatch)
    assert fake.stats.usages == [], output
    assert code == 1, output
    assert ("budget of $0.025 reached (nothing submitted): 20 images were not submitted (run again to submit them:"
            " --budget caps each run)") in output, output
