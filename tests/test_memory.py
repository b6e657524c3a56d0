"""Sync mode keeps memory flat as the folder grows: decoded images and encoded payloads are bounded by the
ingest window and the requests in flight, never by the number of files."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import virtualtime
from imagegen import run_cli
from imgtag.presets import load_preset
from imgtag.pricing.catalogue import catalogue
from imgtag.pricing.estimate import RequestEstimate
from imgtag.providers.anthropic_provider import AnthropicProvider
from imgtag.providers.base import ImageInput
from imgtag.request.engine import Engine, EngineSettings, WorkItem
from imgtag.request.pacer import Pacer
from imgtag.store import WorkKey
from serversim import Recorder, SimProvider, TokenBucket


def noisy_images(folder: Path, n: int) -> None:
    """Noise compresses badly, so each encoded payload is realistically large (~100 KB)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(n)
    for i in range(n):
        pixels = rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"n{i:04d}.jpg", quality=90)


# Requests in flight are bounded by --concurrency, not by the folder. At the default (64) how many are in flight
# at once depends on how much CPU the main process gets (a starved event loop holds more requests started and not yet
# finished), so two runs' peaks would compare the machine's load, not the folder's size. At 4 both runs reach the
# same bound, and what is left to differ is what grows with the number of files.
CONCURRENCY = 4


def peak_for(images: int, tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> int:
    folder = tmp_path / f"in{images}"
    noisy_images(folder, images)
    # The cyclic garbage collector is off during the run: a request body is freed when the request ends, by
    # reference counting, or it is a leak. A body held by a reference cycle (as the SDK's `messages.stream()` helper
    # did) was freed only when a full collection happened to run, which depends on allocation counts and timing:
    # the test failed 1 run in 6. With the collector off such a body stays, and the test fails every time.
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        code, output = run_cli(["run", str(folder), "--out", str(tmp_path / f"out{images}"), "-q", "--workers", "1",
                                "--concurrency", str(CONCURRENCY)], env, monkeypatch)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        gc.enable()
    assert code == 0, output
    return peak


def test_sync_run_memory_does_not_grow_with_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The fake runs in its own process so its request log does not count against us.
    fake = subprocess.Popen([sys.executable, "-m", "tests.fakes.anthropic_server", "--port", "0", "--config",
                             json.dumps({"latency_s": 0.02})], stdout=subprocess.PIPE, text=True)
    try:
        assert fake.stdout is not None
        env = {"ANTHROPIC_BASE_URL": fake.stdout.readline().strip(), "ANTHROPIC_API_KEY": "sk-ant-test-key"}
        peak_for(5, tmp_path, env, monkeypatch)  # warm-up: first-time imports are not what we measure
        small = peak_for(30, tmp_path, env, monkeypatch)
        large = peak_for(240, tmp_path, env, monkeypatch)
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    # 8x the images (~100 MB more request bodies); allow modest growth, nothing proportional. Measured: 3.1-3.5 MB
    # and 3.7-3.95 MB (the same with the collector on: the difference is per-file state bounded elsewhere, mostly
    # the near-duplicate index's mirror, store/near.py, dropped past 10,000 files); 62 MB at 240 images when each
    # answered request's body waited for the collector (bench/sync_memory.py, docs/benchmarks.md).
    assert large < small * 1.5 + 1024 * 1024, (small, large)


def jpeg(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(out, format="JPEG")
    return out.getvalue()


def test_a_failed_requests_body_is_not_kept_while_its_image_waits_to_be_asked_again(fake_anthropic_factory) -> None:
    """Between a 529 and the retry the image holds no permit: were its failed request still alive (the error the
    provider raised carries the SDK's, whose response refers to the request and its body), bodies would pile up
    beyond the requests in flight, one per image in backoff."""
    fake = fake_anthropic_factory(fail_first_n=4)  # every image's first attempt is answered 529
    provider = AnthropicProvider(api_key=fake.config.api_key, base_url=fake.base_url)
    preset, model = load_preset("keywords"), catalogue().get(catalogue().default_model)
    settings = EngineSettings(key=WorkKey(preset.version, provider.name, model.id), preset=preset, model=model,
                              backoff_base_s=0.5)
    in_backoff: list[int] = []  # SDK request objects alive while nothing was in flight and images waited

    async def items() -> AsyncIterator[WorkItem]:
        for i in range(4):
            yield WorkItem(job_id=i, sha256=f"{i:064x}", display=f"{i}.jpg",
                           image=ImageInput(jpeg((40 * i, 90, 200)), "image/jpeg"),
                           estimate=RequestEstimate(input_tokens=1000, output_tokens=200))

    async def main() -> Engine:
        await provider.ready()  # the SDK's import first: what is measured is the run
        engine = Engine(Recorder(), provider, settings, Pacer(max_concurrency=4), None)  # type: ignore[arg-type]

        async def watch() -> None:
            while True:
                await asyncio.sleep(0.02)
                if engine.unsettled and provider.on_the_wire_now == 0 and engine.stats.retries:
                    in_backoff.append(sum(type(o).__name__ == "Request" and type(o).__module__.startswith("httpx")
                                          for o in gc.get_objects()))

        watcher = asyncio.create_task(watch())
        try:
            await engine.run(items())
        finally:
            watcher.cancel()
            await provider.aclose()
        return engine

    gc.collect()
    gc.disable()  # what holds a body must let it go by itself, not when a collection happens to run
    try:
        engine = asyncio.run(main())
    finally:
        gc.enable()
    assert engine.stats.ok == 4 and engine.stats.retries == 4
    assert in_backoff and max(in_backoff) == 0, in_backoff


def test_images_waiting_to_be_asked_again_are_bounded_not_taken_in_with_the_folder() -> None:
    """A 500 answered at once gives its permit back and its image waits out the backoff holding none: without a
    bound of its own the engine took in image after image, each failing fast, while the earlier ones waited
    (247 images held at once with at most 16 in flight, 1,600 images of which the first 960 requests failed)."""
    preset, model = load_preset("keywords"), catalogue().get(catalogue().default_model)

    async def items(n: int) -> AsyncIterator[WorkItem]:
        for i in range(n):
            yield WorkItem(job_id=i, sha256=f"{i:064x}", display=f"{i}.jpg", image=ImageInput(b"image %d" % i,
                           "image/jpeg"), estimate=RequestEstimate(input_tokens=1000, output_tokens=200))

    async def main() -> tuple[int, int, Engine]:
        loop = asyncio.get_running_loop()
        sim = SimProvider(TokenBucket(4000, 1.0, loop.time()), name="sim", latency_s=0.01, fail_first=960)
        settings = EngineSettings(key=WorkKey(preset.version, sim.name, model.id), preset=preset, model=model,
                                  max_unsettled=32)
        engine = Engine(Recorder(), sim, settings, Pacer(max_concurrency=16, clock=loop.time), None)  # type: ignore[arg-type]
        held = 0

        async def watch() -> None:
            nonlocal held
            while True:
                await asyncio.sleep(0.005)
                held = max(held, engine.unsettled)

        watcher = asyncio.create_task(watch())
        try:
            await engine.run(items(1600))
        finally:
            watcher.cancel()
        return held, sim.traffic.peak_in_flight, engine

    held, in_flight, engine = virtualtime.run(main)
    # The first 960 requests fail whoever sends them: with fewer images in play each is asked more often, and some
    # use up their attempts. (A storm that lasts a while fails fewer images for good this way: only those in play.)
    assert engine.stats.ok + engine.stats.failed == 1600 and engine.stats.requests == engine.stats.ok + 960
    # 32 started and not settled, and the next image, taken from the input, waiting for room (247 without the bound)
    assert in_flight <= 16 and held <= 32 + 1, (held, in_flight)
