"""What the live line says about money and pace must be true for the provider in use: credits for the credit-billed
tag API (never a $0 that is not the bill), and the concurrency limit that really bounds requests to a local server."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

from imagegen import make_images
from imgtag.app.progress import Progress
from imgtag.app.runner import Run
from imgtag.config.runconfig import RunConfig
from imgtag.export.targets import target_meta
from imgtag.providers import create_provider, resolve_target
from imgtag.store import Store


def run_and_snapshot(cfg: RunConfig, provider_name: str, provider_kw: dict[str, Any],
                     during: Any = None) -> list[Any]:
    """Run to the end through the real Run/engine; returns snapshots taken by `during(run)` and one at the end."""
    target = resolve_target(cfg)
    seen: list[Any] = []

    async def go() -> None:
        provider = create_provider(provider_name, **provider_kw)
        try:
            with Store(cfg.out) as store:
                store.set_meta("target", target_meta(cfg, target))
                run = Run(cfg, store, target, provider)
                task = asyncio.create_task(run.execute())
                if during is not None:
                    await during(run, seen)
                await task
                seen.append(run.snapshot())
        finally:
            await provider.aclose()

    asyncio.run(go())
    return seen


def test_credit_billed_provider_shows_credits_not_dollars(tmp_path: Path, monkeypatch: Any) -> None:
    from tests.fakes.imagedescriber_server import FakeTagConfig, FakeTagServer

    fake = FakeTagServer(FakeTagConfig(rate_limit=100_000, cost=2.0)).start()
    try:
        for name, value in fake.env(IMAGEDESCRIBER_REQUESTS_PER_MINUTE="6000").items():
            monkeypatch.setenv(name, value)
        make_images(tmp_path / "in", 3)
        cfg = RunConfig(inputs=[str(tmp_path / "in")], out=tmp_path / "out", progress=False,
                        provider="imagedescriber", preset="keywords")
        snap = run_and_snapshot(cfg, "imagedescriber", {"timeout": 30.0})[-1]
    finally:
        fake.stop()
    assert snap.ok == 3
    line = Progress(lambda: snap, stream=io.StringIO()).line(snap)
    assert "6 credits" in line, line
    assert "$" not in line, line


def test_local_server_line_shows_the_adaptive_limit_that_bounds_requests(tmp_path: Path, fake_openai_factory: Any,
                                                                         monkeypatch: Any) -> None:
    fake = fake_openai_factory(latency_s=0.2)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    make_images(tmp_path / "in", 12, size=(64, 64))
    cfg = RunConfig(inputs=[str(tmp_path / "in")], out=tmp_path / "out", progress=False, min_side=0,
                    provider="openai", model="glm-4v-9b", provider_settings={"base_url": fake.base_url})

    async def during(run: Run, seen: list[Any]) -> None:
        for _ in range(400):
            await asyncio.sleep(0.02)
            eng = run.engine
            if eng is not None and eng.pacer.in_flight >= 2:
                seen.append((run.snapshot(), eng.provider.limiter.limit, eng.pacer.window))
                return

    seen = run_and_snapshot(cfg, "openai", {"base_url": fake.base_url, "timeout": 30.0}, during)
    snap, limit, window = seen[0]
    assert limit <= window  # the local server's limiter binds, not the pacer's probing window
    assert snap.pace == f"up to {limit} requests at a time (adapting to the server's speed)", snap.pace
    assert "learning the rate limit" not in snap.pace


def test_progress_line_words_for_credits(tmp_path: Path) -> None:
    from imgtag.app.progress import Snapshot

    snap = Snapshot(discovered=3, finished=1, ok=1, failed=0, skipped=0, in_flight=0, spent_usd=0.0, pace="",
                    discovery_done=True, credits_used=1.0, spent_to_date_usd=0.0)
    line = Progress(lambda: snap, stream=io.StringIO()).line(snap)
    assert "1 credit" in line and "credits" not in line and "$" not in line, line
    assert json.dumps(line)  # plain text
