"""Issue 10: what a run costs. The dry-run estimate against the usage the fake server bills (caching included),
the cached prefix per model, one cache write in sync mode, 1-hour TTL in batch mode, detail levels."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from tests.fakes.anthropic_server import DEFAULT_TEXT_TOKEN_FACTORS, TEXT_TOLERANCE, text_tokens
from typer.testing import CliRunner

from conftest import PHOTOS
from imagegen import make_images, run_cli
from imgtag.cli.commands import app
from imgtag.presets import load_preset, with_detail
from imgtag.presets.packed import packed_preset
from imgtag.pricing.catalogue import catalogue
from imgtag.pricing.prefix import plan_prefix
from imgtag.providers.anthropic_provider import AnthropicProvider
from imgtag.providers.base import ImageInput, RequestOptions
from imgtag.request.limits_cache import CACHE_ENV, FILE_NAME, PREFIXES
from imgtag.validate.schema import to_anthropic_schema

PRODUCT = ["clothing_dress_4e788cda.jpg", "clothing_hat_e58c2375.jpg", "clothing_shoes_6b4278ed.jpg",
           "intel_bus.jpg", "intel_dog_bicycle.jpg", "recurser_Portrait_6.jpg", "skimage_coffee.png",
           "skimage_coins.png", "coral_cat_1080p.jpg", "darknet_horses.jpg"]
FAST_BATCH = ["--poll-interval", "0.05", "-q"]
# The fake counts text its own way (words and characters), imgtag estimates characters / 4: the two agree on a
# prompt to within TEXT_TOLERANCE (test_the_fake_counts_text_its_own_way). Both count images exactly (the API's 28-px
# rule on the pixels sent) and these tests state the answers' size, so a bill differs from its estimate only through
# text: at most TEXT_TOLERANCE on text-only token classes, and on dollars at most TEXT_TOLERANCE times text's share
# of the bill, which is under half in these runs (answers cost 5x input per token): DOLLAR_TOLERANCE.
DOLLAR_TOLERANCE = TEXT_TOLERANCE / 2


def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in PRODUCT:
        (folder / name).write_bytes((PHOTOS / name).read_bytes())
    return folder


def billed_usd(fake: Any, model: str, batch: bool) -> float:
    """Dollars for the fake's usage, from its own counters (1-hour writes at 2x, 5-minute at 1.25x)."""
    p = catalogue().get(model).prices
    s = fake.stats
    w1h = s.cache_creation_1h_input_tokens
    usd = (s.input_tokens * p.input + s.output_tokens * p.output + s.cache_read_input_tokens * p.cache_read
           + (s.cache_creation_input_tokens - w1h) * p.cache_write_5m + w1h * p.cache_write_1h) / 1e6
    return usd / 2 if batch else usd


def est_unpacked(folder: Path, tmp_path: Path, model: str, preset: str) -> dict[str, Any]:
    return scan_estimate(folder, tmp_path / "scan1", model, preset)


def scan_estimate(folder: Path, out: Path, model: str, preset: str, extra: list[str] = []) -> dict[str, Any]:  # noqa: B006
    result = CliRunner().invoke(app, ["scan", str(folder), "--json", "--out", str(out), "--model", model,
                                      "--preset", preset, *extra], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.splitlines()[-1])
    return next(e for e in summary["estimates"] if e["model"] == model)


@pytest.mark.parametrize("model, pack", [("claude-sonnet-4-6", 1), ("claude-haiku-4-5", 1), ("claude-haiku-5-5", 1),
                                         ("claude-sonnet-4-6", 4), ("claude-haiku-4-5", 4)])
@pytest.mark.parametrize("mode", ["sync", "batch"])
def test_dry_run_estimate_holds_to_the_billed_usage(tmp_path: Path, fake_anthropic_factory: Any,
                                                           monkeypatch: pytest.MonkeyPatch, model: str,
                                                           mode: str, pack: int) -> None:
    folder = photos(tmp_path)
    # The fake's answers are ~56 output tokens on this schema; a preset states its typical answer size, so the
    # test states the fake's. Everything on the input side (images, prompt, schema, caching) is estimated.
    preset = tmp_path / "shop.toml"
    preset.write_text('extends = "ecommerce"\nexpected_output_tokens = 56\n', encoding="utf-8")
    packing = ["--images-per-request", str(pack)]
    est = scan_estimate(folder, tmp_path / "scan", model, str(preset), packing)
    fake = fake_anthropic_factory(batch_processing_s=0.05)
    code, output = run_cli(["run", str(folder), "--out", str(tmp_path / "out"), "--model", model, "--mode", mode,
                            "--preset", str(preset), *packing, *FAST_BATCH], fake.env(), monkeypatch)
    assert code == 0, output
    predicted = est[mode]
    billed = billed_usd(fake, model, batch=mode == "batch")
    # Packs are full but for the run's last one, in sync mode (the first pack warms the cache) as in batch mode.
    assert predicted["usd"] == pytest.approx(billed, rel=DOLLAR_TOLERANCE)
    if pack > 1:
        assert predicted["usd"] < est_unpacked(folder, tmp_path, model, str(preset))[mode]["usd"]
    s = fake.stats
    assert predicted["cache_read_tokens"] == pytest.approx(s.cache_read_input_tokens, rel=TEXT_TOLERANCE, abs=1)
    assert predicted["cache_write_tokens"] == pytest.approx(s.cache_creation_input_tokens, rel=TEXT_TOLERANCE, abs=1)
    assert predicted["input_tokens"] == pytest.approx(s.input_tokens, rel=TEXT_TOLERANCE)
    # At the preset's detail level every product photo still gets the full field set, on its own image.
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == len(PRODUCT) and all(r["status"] == "ok" for r in rows)
    assert all(set(r["fields"]) == {"tags", "category", "description", "color", "style"} for r in rows)
    assert len({r["fields"]["color"] for r in rows}) == len(PRODUCT)  # each answer names its own image
    # status shows the estimate beside the actual
    status = CliRunner().invoke(app, ["status", "--out", str(tmp_path / "out"), "--json"], catch_exceptions=False)
    shown = json.loads(status.stdout)
    assert shown["estimate"]["mode"] == mode and shown["estimate"]["images"] == len(PRODUCT)
    assert shown["estimate"]["usd"] == pytest.approx(billed, rel=DOLLAR_TOLERANCE)
    assert shown["cost_usd"] == pytest.approx(billed, rel=1e-4)
    human = CliRunner().invoke(app, ["status", "--out", str(tmp_path / "out")], catch_exceptions=False)
    assert f"({mode}, caching included); actual $" in human.stdout


def test_the_fake_counts_text_its_own_way() -> None:
    """The fake server's bill is an independent count: on every cached prefix imgtag sends (each built-in preset,
    with and without a language and packed, for each catalogue model) it differs from imgtag's estimate, by at
    most TEXT_TOLERANCE."""
    ratios = []
    for name in ("ecommerce", "keywords", "alt-text", "caption", "ocr"):
        for lang in (None, "zh", "de"):
            for preset in (load_preset(name, lang=lang), packed_preset(load_preset(name, lang=lang))):
                for model_id, model in catalogue().models.items():
                    plan = plan_prefix(preset, model)
                    factor = DEFAULT_TEXT_TOKEN_FACTORS.get(model_id, 1.0)
                    sent = [json.dumps(to_anthropic_schema(preset.schema), sort_keys=True), *plan.system_blocks]
                    ratios.append(sum(text_tokens(text, factor) for text in sent) / plan.tokens)
    assert sum(abs(r - 1) > 0.005 for r in ratios) > 0.9 * len(ratios)  # not the same count
    assert all(abs(r - 1) <= TEXT_TOLERANCE for r in ratios), (min(ratios), max(ratios))


def test_prefix_plan_per_model_from_the_catalogue() -> None:
    preset = load_preset("ecommerce")
    cat = catalogue()
    sonnet, haiku45, haiku55 = (plan_prefix(preset, cat.get(m)) for m in
                                ("claude-sonnet-4-6", "claude-haiku-4-5", "claude-haiku-5-5"))
    # Sonnet 4.6 (1,024 minimum): the prompt alone falls short; the guide lifts it over, and is sent.
    assert sonnet.cache and sonnet.guide_tokens > 0 and sonnet.tokens >= 1024 * 1.1
    # Haiku 4.5 (4,096 minimum): out of reach, so the prefix is kept small (the compact prompt) and unmarked.
    assert not haiku45.cache and haiku45.guide_tokens == 0
    assert haiku45.system_blocks == (preset.compact_system,) and haiku45.tokens < 0.6 * sonnet.schema_tokens + \
        0.6 * sonnet.system_tokens
    # Haiku 5.5 (512 minimum): cached as it is, no guide needed.
    assert haiku55.cache and haiku55.guide_tokens == 0
    assert plan_prefix(preset, cat.get("claude-sonnet-4-6"), batch=True).ttl == "1h"
    for name in ("ecommerce", "keywords", "alt-text", "caption", "ocr"):
        assert plan_prefix(load_preset(name), cat.get("claude-sonnet-4-6")).cache, name


def test_request_marks_only_a_cacheable_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
    provider = AnthropicProvider()
    preset = load_preset("ecommerce")
    image = ImageInput(b"\xff\xd8fake", "image/jpeg")
    cat = catalogue()
    sync = provider.build_params(image, RequestOptions(preset, cat.get("claude-sonnet-4-6"), 300))
    assert [b["text"] for b in sync["system"]] == [preset.system, preset.guide]
    assert sync["system"][-1]["cache_control"] == {"type": "ephemeral"}
    batch = provider.build_params(image, RequestOptions(preset, cat.get("claude-sonnet-4-6"), 300, batch=True))
    assert batch["system"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    small = provider.build_params(image, RequestOptions(preset, cat.get("claude-haiku-4-5"), 300))
    # Uncacheable (Haiku 4.5): the compact prompt, unmarked, so every request pays for fewer tokens.
    assert small["system"] == [{"type": "text", "text": preset.compact_system}]
    new = provider.build_params(image, RequestOptions(preset, cat.get("claude-haiku-5-5"), 300))
    assert new["thinking"] == {"type": "disabled"} and "cache_control" in new["system"][-1]


def test_sync_pays_one_cache_write_for_concurrent_requests(tmp_path: Path, fake_anthropic_factory: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    make_images(tmp_path / "in", 12)
    # Half a second per answer: without the warm-up, the engine's opening ramp puts several requests in flight
    # before the first answer exists, and each of them pays the 1.25x write.
    fake = fake_anthropic_factory(latency_s=0.5)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--model",
                            "claude-sonnet-4-6", "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    prefix = plan_prefix(load_preset("ecommerce"), catalogue().get("claude-sonnet-4-6")).tokens
    assert fake.stats.peak_concurrency > 1  # the rest still ran concurrently
    assert fake.stats.cache_creation_input_tokens == pytest.approx(prefix, rel=TEXT_TOLERANCE)  # one write
    assert fake.stats.cache_read_input_tokens == 11 * fake.stats.cache_creation_input_tokens  # read by all others


def test_a_run_within_the_caches_lifetime_skips_the_warm_up(tmp_path: Path, fake_anthropic_factory: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import imgtag.app.runner as runner_module

    warm_flags: list[bool] = []
    real = runner_module.warm_cache_first

    def spy(provider: Any, *, cache_warm: bool = False) -> Any:
        warm_flags.append(cache_warm)
        return real(provider, cache_warm=cache_warm)

    monkeypatch.setattr(runner_module, "warm_cache_first", spy)
    fake = fake_anthropic_factory(latency_s=0.2)
    out = tmp_path / "out"
    for batch in ("a", "b"):
        make_images(tmp_path / batch, 6, size=(230 + len(batch), 224) if batch == "b" else (224, 224))
        code, output = run_cli(["run", str(tmp_path / batch), "--out", str(out), "--model", "claude-sonnet-4-6",
                                "-q"], fake.env(), monkeypatch)
        assert code == 0, output
    # The second run, right after the first, finds the cache warm: nothing waits for a first answer, and every
    # request of it reads the prefix (only the first run's one write was paid).
    assert warm_flags == [False, True]
    prefix = plan_prefix(load_preset("ecommerce"), catalogue().get("claude-sonnet-4-6")).tokens
    assert fake.stats.cache_creation_input_tokens == pytest.approx(prefix, rel=TEXT_TOLERANCE)  # one write
    assert fake.stats.cache_read_input_tokens == 11 * fake.stats.cache_creation_input_tokens
    # Five minutes later the entry has lapsed: the next run warms it again. Both memories say when the cache was
    # last used: the store's attempts and the user cache's note (test_warm_prefix.py).
    db = sqlite3.connect(out / "imgtag.db")
    with db:
        db.execute("UPDATE attempts SET started_at = '2026-01-01T00:00:00.000+00:00',"
                   " finished_at = '2026-01-01T00:00:00.000+00:00'")
    db.close()
    notes = Path(os.environ[CACHE_ENV]) / FILE_NAME
    data = json.loads(notes.read_text())
    data[PREFIXES] = {name: at - 300 for name, at in data[PREFIXES].items()}
    notes.write_text(json.dumps(data))
    make_images(tmp_path / "c", 3, size=(240, 224))
    code, output = run_cli(["run", str(tmp_path / "c"), "--out", str(out), "--model", "claude-sonnet-4-6", "-q"],
                           fake.env(), monkeypatch)
    assert code == 0, output
    assert warm_flags == [False, True, False]


def test_batch_uses_one_hour_ttl_and_records_cache_tokens(tmp_path: Path, fake_anthropic_factory: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    make_images(tmp_path / "in", 6)
    # Six items over 30 simulated minutes: 5-minute entries would lapse between them.
    fake = fake_anthropic_factory(batch_processing_s=0.05, batch_span_s=1800)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--model", "claude-sonnet-4-6",
                            "--mode", "batch", *FAST_BATCH], fake.env(), monkeypatch)
    assert code == 0, output
    assert fake.stats.cache_creation_1h_input_tokens == fake.stats.cache_creation_input_tokens > 0
    assert fake.stats.cache_read_input_tokens > 0
    db = sqlite3.connect(out / "imgtag.db")
    write, read = db.execute("SELECT SUM(cache_creation_input_tokens), SUM(cache_read_input_tokens) FROM attempts"
                             " WHERE outcome = 'ok'").fetchone()
    db.close()
    assert (write, read) == (fake.stats.cache_creation_input_tokens, fake.stats.cache_read_input_tokens)
    assert billed_usd(fake, "claude-sonnet-4-6", True) == pytest.approx(
        json.loads(CliRunner().invoke(app, ["status", "--out", str(out), "--json"]).stdout)["cost_usd"], rel=1e-4)


def test_detail_override_changes_size_and_version_never_upscales(tmp_path: Path) -> None:
    base = load_preset("ecommerce")
    assert base.detail == "low"
    high = with_detail(base, "standard")
    edge = with_detail(base, max_edge=300)
    assert len({base.version, high.version, edge.version}) == 3
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("coral_cat_1080p.jpg", "clothing_hat_e58c2375.jpg"):
        (folder / name).write_bytes((PHOTOS / name).read_bytes())
    # a wide phone panorama's shape (4608x1976), made here so the test runs on a fresh clone
    from PIL import Image

    Image.new("RGB", (4608, 1976), (90, 140, 200)).save(folder / "wide_4608x1976.jpg", quality=80)

    def tokens(*flags: str) -> dict[str, int]:
        result = CliRunner().invoke(app, ["scan", str(folder), "--json", "--out", str(tmp_path / "s"), *flags],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return {json.loads(x)["path"]: json.loads(x)["image_tokens"] for x in result.stdout.splitlines()[:-1]}

    low, standard, capped = tokens(), tokens("--detail", "standard"), tokens("--max-edge", "300")
    assert low["coral_cat_1080p.jpg"] == 18 * 11  # 504x284
    assert standard["coral_cat_1080p.jpg"] == 1560  # 1456x819, the standard tier
    assert capped["clothing_hat_e58c2375.jpg"] == 11 * 9  # 300x225
    assert low["clothing_hat_e58c2375.jpg"] == 18 * 14  # 504x378 from 533x400
    assert standard["clothing_hat_e58c2375.jpg"] == 20 * 15  # 533x400 as it is: never upscaled
    # 4608x1976 at a 300-px cap would be 300x129: the cap gives way to keep a 200-px short side (467x200).
    assert capped["wide_4608x1976.jpg"] == 17 * 8


@pytest.mark.parametrize("flags, message", [
    (["--detail", "ultra"], "--detail must be one of low, standard, high, not 'ultra'"),
    (["--max-edge", "100"], "--max-edge must be between 200 and 2576 px, not 100"),
])
def test_bad_detail_flags_are_one_line_usage_errors(tmp_path: Path, flags: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["run", str(PHOTOS / "coral_owl.jpg"), "--out", str(tmp_path / "o"),
                                      "--dry-run", *flags])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
