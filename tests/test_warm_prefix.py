"""A run into a new --out within the prompt cache's lifetime skips the warm-up: the user cache remembers when this
account last used exactly this prefix on this endpoint (request/warm_prefix.py, issue 16 item 5). Only within 4 of
the cache's 5 minutes, never for another key, another model or another prompt."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from tests.fakes.anthropic_server import TEXT_TOLERANCE

from imagegen import make_images, run_cli
from imgtag.presets import load_preset
from imgtag.pricing.catalogue import catalogue
from imgtag.pricing.prefix import plan_prefix
from imgtag.request.limits_cache import CACHE_ENV, FILE_NAME, PREFIXES, UserCache
from imgtag.request.warm_prefix import prefix_id

MODEL = "claude-sonnet-4-6"
KEY = "test-key-not-real-SECRET-user-a"  # a placeholder: never a real key in the repo


class Endpoint:
    name = "anthropic"

    def __init__(self, base_url: str | None = None) -> None:
        self.base_url = base_url


@pytest.fixture
def warm_flags(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What each run decided: True when it knew the cache to be warm (no warm-up)."""
    import imgtag.app.runner as runner_module

    flags: list[bool] = []
    real = runner_module.warm_cache_first

    def spy(provider: Any, *, cache_warm: bool = False) -> Any:
        flags.append(cache_warm)
        return real(provider, cache_warm=cache_warm)

    monkeypatch.setattr(runner_module, "warm_cache_first", spy)
    return flags


def run(tmp_path: Path, name: str, fake: Any, monkeypatch: pytest.MonkeyPatch, *extra: str) -> None:
    make_images(tmp_path / name, 6, size=(224 + 2 * (ord(name) - ord("a")), 224))  # new content every run
    code, output = run_cli(["run", str(tmp_path / name), "--out", str(tmp_path / f"out-{name}"), "--model", MODEL,
                            "-q", *extra], fake.env(), monkeypatch)
    assert code == 0, output


def messages(fake: Any, since: float) -> list[dict[str, Any]]:
    return sorted((e for e in fake.stats.request_log if e["path"] == "/v1/messages" and e["t"] >= since),
                  key=lambda e: e["t"])


def age_notes(by_s: float) -> None:
    path = Path(__import__("os").environ[CACHE_ENV]) / FILE_NAME
    data = json.loads(path.read_text())
    data[PREFIXES] = {k: v - by_s for k, v in data[PREFIXES].items()}
    path.write_text(json.dumps(data))


def test_a_new_out_within_the_caches_lifetime_sends_its_first_requests_together(
        tmp_path: Path, fake_anthropic_factory: Any, monkeypatch: pytest.MonkeyPatch, warm_flags: list[bool]) -> None:
    fake = fake_anthropic_factory(latency_s=1.5, ttft_s=1.0)
    run(tmp_path, "a", fake, monkeypatch)
    second = time.time()
    run(tmp_path, "b", fake, monkeypatch)  # another --out: its store knows nothing of the first run
    assert warm_flags == [False, True]
    log = messages(fake, second)
    # Nothing waited for a first answer to begin: the second request reached the server before the first one's
    # answer began (a warm-up holds every other request until then).
    assert log[1]["t"] < log[0]["t"] + 1.0
    # And the cache was warm indeed: the first run's one write, read by every other request of both runs.
    prefix = plan_prefix(load_preset("ecommerce"), catalogue().get(MODEL)).tokens
    assert fake.stats.cache_creation_input_tokens == pytest.approx(prefix, rel=TEXT_TOLERANCE)
    assert fake.stats.cache_read_input_tokens == 11 * fake.stats.cache_creation_input_tokens


def test_after_four_minutes_the_warm_up_comes_back(tmp_path: Path, fake_anthropic_factory: Any,
                                                   monkeypatch: pytest.MonkeyPatch, warm_flags: list[bool]) -> None:
    fake = fake_anthropic_factory(latency_s=0.2)
    run(tmp_path, "a", fake, monkeypatch)
    age_notes(241.0)  # the entry may lapse before the run's first request reaches the server
    run(tmp_path, "b", fake, monkeypatch)
    age_notes(-3600.0)  # a note from the future (the clock was set back) proves nothing either
    run(tmp_path, "c", fake, monkeypatch)
    assert warm_flags == [False, False, False]


def test_another_key_does_not_share(tmp_path: Path, fake_anthropic_factory: Any, monkeypatch: pytest.MonkeyPatch,
                                    warm_flags: list[bool]) -> None:
    run(tmp_path, "a", fake_anthropic_factory(latency_s=0.2), monkeypatch)
    # Another key may be another organisation or workspace, whose cache is its own.
    run(tmp_path, "b", fake_anthropic_factory(latency_s=0.2, api_key="sk-ant-test-key-of-another-team"), monkeypatch)
    assert warm_flags == [False, False]


def test_another_model_or_prompt_does_not_share(tmp_path: Path, fake_anthropic_factory: Any,
                                                monkeypatch: pytest.MonkeyPatch, warm_flags: list[bool]) -> None:
    fake = fake_anthropic_factory(latency_s=0.2)
    run(tmp_path, "a", fake, monkeypatch)
    run(tmp_path, "b", fake, monkeypatch, "--lang", "de")  # another system prompt
    run(tmp_path, "c", fake, monkeypatch, "--preset", "alt-text")  # another prompt and schema
    assert warm_flags == [False, False, False]


def test_the_prefix_is_named_by_endpoint_model_and_content() -> None:
    preset, cat = load_preset("ecommerce"), catalogue()
    one = prefix_id(Endpoint(), preset, cat.get(MODEL))
    assert one == prefix_id(Endpoint(), load_preset("ecommerce"), cat.get(MODEL))
    assert one != prefix_id(Endpoint("http://127.0.0.1:4000"), preset, cat.get(MODEL))  # a gateway
    assert one != prefix_id(Endpoint(), preset, cat.get("claude-opus-4-8"))
    assert one != prefix_id(Endpoint(), load_preset("alt-text"), cat.get(MODEL))


def test_the_note_holds_neither_key_nor_prompt_and_keeps_the_learned_limits(tmp_path: Path) -> None:
    cache, now = UserCache(tmp_path), time.time()
    cache.save("anthropic", KEY, {"saved_at": now, "buckets": {}})
    cache.note_prefix_used("anthropic", KEY, "the-prefix", now - 100)
    cache.note_prefix_used("anthropic", KEY, "the-prefix", now - 200)  # an older use never hides a newer one
    cache.save("anthropic", KEY, {"saved_at": now, "buckets": {"requests": {}}})  # keeps the notes
    assert cache.prefix_used_at("anthropic", KEY, "the-prefix") == now - 100
    assert cache.prefix_used_at("anthropic", "test-key-not-real-SECRET-user-b", "the-prefix") is None
    assert cache.prefix_used_at("anthropic", KEY, "another-prefix") is None
    assert cache.load("anthropic", KEY) == {"saved_at": now, "buckets": {"requests": {}}}
    text = (tmp_path / FILE_NAME).read_text()
    assert KEY not in text and "the-prefix" not in text
