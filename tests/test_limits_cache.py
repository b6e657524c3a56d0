"""Learned rate limits are remembered per provider and account in a user-level cache, so a new --out starts at the
known pace (issue 16 item 5). The store keeps its own copy; a run seeds from the newer of the two."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import pytest

from imagegen import make_images, run_cli
from imgtag.providers.base import RateLimitSnapshot
from imgtag.request import learned_limits
from imgtag.request.limits_cache import CACHE_ENV, cache_dir
from imgtag.request.pacer import Pacer
from imgtag.store import Store

KEY = "test-key-not-real-SECRET-user-a"  # a placeholder: never a real key in the repo


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class KeyedProvider:
    name = "anthropic"

    def __init__(self, key: str = KEY, base_url: str | None = None) -> None:
        self.api_key = key
        self.base_url = base_url


def learned_pacer(rpm: int, remaining: int) -> Pacer:
    pacer = Pacer(clock=Clock())
    pacer.observe(RateLimitSnapshot(requests_limit=rpm, requests_remaining=remaining))
    return pacer


def seeded(out: Path, key: str = KEY) -> Pacer:
    pacer = Pacer(clock=Clock())
    with Store(out) as store:
        learned_limits.Memory(store, KeyedProvider(key), "anthropic").seed(pacer)
    return pacer


def save(out: Path, pacer: Pacer, key: str = KEY) -> None:
    with Store(out) as store:
        learned_limits.Memory(store, KeyedProvider(key), "anthropic").save(pacer)


@pytest.fixture(autouse=True)
def user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "user-cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder


def test_a_new_out_starts_from_what_another_out_learned(tmp_path: Path, user_cache: Path) -> None:
    save(tmp_path / "first", learned_pacer(600, 59))
    pacer = seeded(tmp_path / "second")  # a new store: nothing in its own table
    assert pacer.limits_known and pacer.describe() == "600 rpm"
    assert pacer.learned()["requests"]["depth"] == 59
    # Another key (another account, another tier) learns nothing from it.
    assert not seeded(tmp_path / "third", key="test-key-not-real-SECRET-user-b").limits_known


def test_the_cache_holds_a_salted_fingerprint_never_the_key(tmp_path: Path, user_cache: Path) -> None:
    save(tmp_path / "out", learned_pacer(600, 59))
    files = [p for p in user_cache.rglob("*") if p.is_file()]
    assert files, "nothing was written to the user cache"
    text = "".join(p.read_text() for p in files)
    assert KEY not in text and hashlib.sha256(KEY.encode()).hexdigest()[:32] not in text
    assert all(p.stat().st_mode & 0o077 == 0 for p in files)  # readable by the user alone


def test_the_newer_of_store_and_user_cache_wins(tmp_path: Path, user_cache: Path) -> None:
    out = tmp_path / "out"
    save(out, learned_pacer(600, 59))             # both copies: 600 rpm
    save(tmp_path / "elsewhere", learned_pacer(1200, 100))  # later, another folder: the cache says 1200 rpm
    assert seeded(out).describe() == "1200 rpm"   # the account's newest figures, though the store had its own
    save(out, learned_pacer(300, 20))             # newest again, in both
    assert seeded(tmp_path / "new").describe() == "300 rpm"


def test_an_unusable_cache_folder_is_no_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "cache"))
    save(tmp_path / "out", learned_pacer(600, 59))  # the store's copy is still written
    assert seeded(tmp_path / "out").describe() == "600 rpm"
    assert not seeded(tmp_path / "new").limits_known


def test_the_cache_folder_follows_the_platform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    expected = tmp_path / "xdg" / "imgtag" if sys.platform.startswith("linux") else None
    if expected is not None:
        assert cache_dir() == expected
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_a_run_into_a_new_out_is_seeded_by_the_last_run(tmp_path: Path, fake_anthropic_factory: Any,
                                                         monkeypatch: pytest.MonkeyPatch, user_cache: Path) -> None:
    """End to end: the CLI's first run writes the user cache; a run into another --out starts from it."""
    make_images(tmp_path / "a", 6)
    fake = fake_anthropic_factory(rpm=600, burst_s=6.0, latency_s=0.05)
    code, output = run_cli(["run", str(tmp_path / "a"), "--out", str(tmp_path / "out-a"), "-q"], fake.env(),
                           monkeypatch)
    assert code == 0, output
    seeds: list[dict[str, Any]] = []
    real_seed = Pacer.seed

    def spy(self: Pacer, learned: dict[str, dict[str, float]], age_s: float) -> None:
        seeds.append(learned)
        real_seed(self, learned, age_s)

    monkeypatch.setattr(Pacer, "seed", spy)
    make_images(tmp_path / "b", 4, size=(232, 224))
    code, output = run_cli(["run", str(tmp_path / "b"), "--out", str(tmp_path / "out-b"), "-q"], fake.env(),
                           monkeypatch)
    assert code == 0, output
    assert len(seeds) == 1 and seeds[0]["requests"]["per_minute"] == 600


def test_no_home_folder_is_no_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    save(tmp_path / "out", learned_pacer(600, 59))  # the store's copy only
    assert seeded(tmp_path / "out").describe() == "600 rpm"


def test_one_key_at_another_server_learns_nothing_from_the_first(tmp_path: Path, user_cache: Path) -> None:
    """Limits were keyed by provider and key alone: a server that sends no rate-limit headers (a local one, fed the
    same key) stayed paced at the 60 rpm another server had advertised to that key."""
    def memory(store: Store, base_url: str | None) -> learned_limits.Memory:
        return learned_limits.Memory(store, KeyedProvider(KEY, base_url), "anthropic")

    with Store(tmp_path / "first") as store:
        memory(store, "http://gateway.example:4000").save(learned_pacer(60, 5))
    for base_url, known in (("http://gateway.example:4000", True), ("http://127.0.0.1:8000", False),
                            (None, False)):
        pacer = Pacer(clock=Clock())
        with Store(tmp_path / f"new-{known}-{base_url is None}") as store:
            memory(store, base_url).seed(pacer)
        assert pacer.limits_known is known, base_url
