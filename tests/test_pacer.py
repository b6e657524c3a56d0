"""The pacer spends the burst the server grants, never more, and a later run starts from what was learned."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

from imagegen import make_images, run_cli
from imgtag.providers.base import RateLimitSnapshot
from imgtag.request.pacer import Pacer, Permit


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def snap(remaining: int, limit: int = 300) -> RateLimitSnapshot:
    return RateLimitSnapshot(requests_limit=limit, requests_remaining=remaining)


def starts_without_waiting(pacer: Pacer, most: int = 200) -> int:
    """How many permits the pacer grants at this instant (the clock does not move)."""
    async def count() -> int:
        n = 0
        for _ in range(most):
            try:
                await asyncio.wait_for(pacer.acquire(), timeout=0.05)
            except asyncio.TimeoutError:
                return n
            n += 1
        return n
    return asyncio.run(count())


def grant(pacer: Pacer, n: int) -> list[Permit]:
    async def take() -> list[Permit]:
        return [await pacer.acquire() for _ in range(n)]
    return asyncio.run(take())


def test_a_six_second_server_bucket_is_spent_not_capped_at_one_second() -> None:
    clock = Clock()
    pacer = Pacer(max_concurrency=500, clock=clock)
    first = grant(pacer, 1)[0]
    clock.t += 0.01
    pacer.observe(snap(29), first)  # 300/min, and the server still holds 29 after this request: a 30-deep bucket
    pacer.release(first, success=True)
    # One second of rate would be 5; the server said 29 more are fine right now.
    assert 27 <= starts_without_waiting(pacer) <= 29


def test_what_we_started_since_is_not_spent_twice() -> None:
    clock = Clock()
    pacer = Pacer(max_concurrency=500, clock=clock)
    first = grant(pacer, 1)[0]
    pacer.observe(snap(29), first)
    later = grant(pacer, 20)  # started after `first`'s answer: the server has counted them as well
    clock.t += 0.5
    pacer.observe(snap(28), later[0])
    # 28 remained after later[0]; 19 more of `later` were counted since; 0.5 s refilled ~2.5: about 11 left.
    assert 9 <= starts_without_waiting(pacer) <= 12


def test_a_server_that_says_less_remains_lowers_the_pace_at_once() -> None:
    clock = Clock()
    pacer = Pacer(max_concurrency=500, clock=clock)
    first = grant(pacer, 1)[0]
    pacer.observe(snap(29), first)
    second = grant(pacer, 1)[0]
    pacer.observe(snap(0), second)  # someone else (another process on the same key) emptied the bucket
    assert starts_without_waiting(pacer) <= 1


def test_learned_limits_seed_the_next_pacer_aged_by_the_time_since() -> None:
    clock = Clock()
    pacer = Pacer(max_concurrency=500, clock=clock)
    first = grant(pacer, 1)[0]
    pacer.observe(snap(29), first)
    grant(pacer, 29)  # the bucket is empty when the run ends
    learned = pacer.learned()
    assert learned["requests"]["per_minute"] == 300 and learned["requests"]["depth"] == 29

    just_after = Pacer(max_concurrency=500, clock=Clock())
    just_after.seed(learned, age_s=0.0)
    assert just_after.limits_known and starts_without_waiting(just_after) <= 1  # no burst into an empty bucket

    next_day = Pacer(max_concurrency=500, clock=Clock())
    next_day.seed(learned, age_s=3600.0)
    assert starts_without_waiting(next_day) >= 25  # refilled: the known burst at once, no cold probe


# -- end to end: the real engine and SDK against the fake server ------------------------------------------

def _rows(out: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(out / "imgtag.db")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_run_uses_the_granted_burst_then_next_run_starts_warm(tmp_path: Path, fake_anthropic_factory: Any,
                                                              monkeypatch: Any) -> None:
    # 600/min with a 6-second bucket: 60 requests may start at once. A pacer capped at one second of rate
    # never has more than ~10 + a latency's worth (5) in flight; the burst takes it well past that.
    out = tmp_path / "out"
    make_images(tmp_path / "a", 70)
    cold = fake_anthropic_factory(rpm=600, burst_s=6.0, latency_s=0.5)
    code, output = run_cli(["run", str(tmp_path / "a"), "--out", str(out), "-q"], cold.env(), monkeypatch)
    assert code == 0, output
    assert cold.stats.peak_concurrency >= 30, cold.stats.peak_concurrency
    # No 429 storm. (The <= 2% figure is bench/throughput.py's, measured on a quiet machine; under a loaded CI
    # runner one or two early 429s are timing, not pacing, so the test allows a few.)
    assert cold.stats.rate_limited <= max(3, 0.02 * cold.stats.messages_requests)

    stored = _rows(out, "SELECT provider, key_fingerprint, limits FROM learned_limits")
    assert len(stored) == 1 and stored[0][0] == "anthropic"
    key = cold.config.api_key
    text = " ".join(str(v) for v in stored[0])
    assert key not in text and hashlib.sha256(key.encode()).hexdigest()[:32] not in text  # salted, not the key
    assert '"per_minute": 600' in stored[0][2]

    # The next run, a minute later (the server's bucket has long refilled): no probing window of 8, the
    # known pace and the burst at once. (Moving the remembered time back stands in for waiting.)
    db = sqlite3.connect(out / "imgtag.db")
    with db:
        db.execute("UPDATE learned_limits SET limits = json_set(limits, '$.saved_at',"
                   " json_extract(limits, '$.saved_at') - 60)")
    db.close()
    make_images(tmp_path / "b", 60, size=(232, 224))
    warm = fake_anthropic_factory(rpm=600, burst_s=6.0, latency_s=0.5)
    code, output = run_cli(["run", str(tmp_path / "b"), "--out", str(out), "-q"], warm.env(), monkeypatch)
    assert code == 0, output
    # From the first answer: one request goes first to warm the prompt cache (request/warmup.py), then the
    # known pace and burst apply.
    t0 = min(t for t, status in warm.stats.events if status == 200)
    answered_first = [t for t, status in warm.stats.events if status == 200 and t - t0 < 0.9]
    # a one-second bucket would allow 10 + 4 in that time, a cold probe 8 (then the first answers come back)
    assert len(answered_first) >= 30, len(answered_first)
    assert warm.stats.rate_limited <= max(3, 0.02 * warm.stats.messages_requests)
