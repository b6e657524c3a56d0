"""The real pacer and engine against a simulated rate-limited server, on a virtual clock (tests/virtualtime.py).

The end-to-end tests run the CLI, SDK and engine against the fake HTTP servers in real time, where a loaded
machine shifts every arrival; they check correctness. These simulations check the schedule itself: when each
request starts, what the server's bucket holds, which request got a 429. The server models are those of
tests/fakes (the Anthropic fake's token bucket, the tag API fake's sliding window), read on the loop's clock,
and the engine is wired to the pacer as app/runner.py wires it (declared limits, learned limits, cache warm-up).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import virtualtime
from imgtag.presets import load_preset
from imgtag.presets.packed import LABEL_FIELD, label_for
from imgtag.pricing.catalogue import catalogue
from imgtag.pricing.costs import Usage
from imgtag.pricing.estimate import RequestEstimate
from imgtag.providers.base import (
    ImageInput,
    ModelAnswer,
    Provider,
    RateLimited,
    RateLimitSnapshot,
    RequestOptions,
    Transient,
)
from imgtag.providers.imagedescriber.fields import map_answer
from imgtag.request.engine import Engine, EngineSettings, WorkItem
from imgtag.request.pacer import Pacer
from imgtag.request.packing import ImagePack
from imgtag.request.warmup import pace_warm_up, warm_cache_first
from imgtag.store import WorkKey

PRESET = "keywords"
TAGS = [f"tag{i}" for i in range(12)]  # the keywords preset wants at least 10

class TokenBucket:
    """The Anthropic fake's request bucket: `burst_s` seconds deep, refilled at rpm/60 a second; a request is
    counted on arrival; `remaining` is the level rounded down; a 429 says retry-after in whole seconds."""

    def __init__(self, rpm: int, burst_s: float, now: float) -> None:
        self.rpm = rpm
        self.rate = rpm / 60.0
        self.capacity = max(1.0, rpm * burst_s / 60.0)
        self.level = self.capacity
        self.lowest = self.level
        self.t = now

    def admit(self, now: float) -> float | None:
        """None if admitted, else the retry-after the server sends."""
        self.level = min(self.capacity, self.level + (now - self.t) * self.rate)
        self.t = now
        if self.level < 1.0:
            return float(max(1, math.ceil((1.0 - self.level) / self.rate)))
        self.level -= 1.0
        self.lowest = min(self.lowest, self.level)
        return None

    def headers(self) -> RateLimitSnapshot:
        # Like the fake, the answer reports the level as the last admission left it.
        return RateLimitSnapshot(requests_limit=self.rpm, requests_remaining=max(0, math.floor(self.level)))

class SlidingWindow:
    """The tag API fake: at most `limit` requests accepted in any `window_s`; no rate-limit headers."""

    def __init__(self, limit: int, window_s: float, retry_after_s: float) -> None:
        self.limit, self.window_s, self.retry_after_s = limit, window_s, retry_after_s
        self.accepted: deque[float] = deque()

    def admit(self, now: float) -> float | None:
        while self.accepted and now - self.accepted[0] >= self.window_s:
            self.accepted.popleft()
        if len(self.accepted) >= self.limit:
            return self.retry_after_s
        self.accepted.append(now)
        return None

    def headers(self) -> RateLimitSnapshot:
        return RateLimitSnapshot()

@dataclass
class Traffic:
    """What happened, in loop time."""

    sent: list[float] = field(default_factory=list)          # each request leaves the client
    admitted: list[float] = field(default_factory=list)      # the server counted it
    rejected: list[float] = field(default_factory=list)      # send times of requests answered 429
    answered: Counter[bytes] = field(default_factory=Counter)  # per image: answers with a result
    sizes: list[int] = field(default_factory=list)           # images per answered request
    limits_known_at: float | None = None                     # the first answer that carried limits came back
    began: list[float] = field(default_factory=list)          # streamed answers began (ttft_s)
    peak_in_flight: int = 0
    in_flight: int = 0

class SimProvider(Provider):
    """A provider whose server is a model in this process: each request travels `uplink_s`, is admitted or
    answered 429 at once, and an admitted one is answered after `latency_s` (+ seeded jitter). With `ttft_s`,
    a request that asks to hear when its answer begins (the streamed cache warm-up) hears it that long after
    admission, with the limits as its headers carried them."""

    def __init__(self, server: TokenBucket | SlidingWindow, *, name: str, latency_s: float, jitter_s: float = 0.0,
                 uplink_s: float = 0.01, declared: RateLimitSnapshot | None = None, seed: int = 1,
                 fail_first: int = 0, ttft_s: float | None = None) -> None:
        self.server = server
        self.ttft_s = ttft_s
        self.fail_first = fail_first  # the first requests admitted are answered 500 (after the latency)
        self.name = name
        self.latency_s, self.jitter_s, self.uplink_s = latency_s, jitter_s, uplink_s
        self.declared = declared or RateLimitSnapshot()
        self.rng = random.Random(seed)
        self.traffic = Traffic()

    def declared_limits(self) -> RateLimitSnapshot:
        return self.declared

    async def describe(self, image: ImageInput, options: RequestOptions) -> ModelAnswer:
        loop = asyncio.get_running_loop()
        t = self.traffic
        sent = loop.time()
        t.sent.append(sent)
        t.in_flight += 1
        t.peak_in_flight = max(t.peak_in_flight, t.in_flight)
        try:
            await asyncio.sleep(self.uplink_s)
            retry_after = self.server.admit(loop.time())
            limits = self.server.headers()
            if retry_after is not None:
                t.rejected.append(sent)
                self._saw(limits, loop.time())
                raise RateLimited("rate limited (429)", retry_after=retry_after, http_status=429,
                                  limits=limits if not limits.empty else self.declared)
            t.admitted.append(loop.time())
            failing = len(t.admitted) <= self.fail_first
            latency = self.latency_s + self.rng.uniform(0.0, self.jitter_s)
            streamed: RateLimitSnapshot | None = None
            if options.began is not None and self.ttft_s is not None:
                await asyncio.sleep(self.ttft_s)
                # A stream's headers come once, with its first byte: the answer carries these same figures.
                streamed = self.server.headers()
                options.began(streamed if not streamed.empty else self.declared)
                latency -= self.ttft_s
                t.began.append(loop.time())
            await asyncio.sleep(latency)
            if failing:
                raise Transient("server error (500)", http_status=500, limits=self.server.headers())
            limits = streamed or self.server.headers()
            self._saw(limits, loop.time())
            images = image.images if isinstance(image, ImagePack) else (image,)
            t.sizes.append(len(images))
            for one in images:
                t.answered[one.data] += 1
            fields = map_answer(options.preset, TAGS, "A title", "A description.")
            # A pack is answered as the packed schema asks: one item per label (request/packing.py splits it).
            obj = fields if not isinstance(image, ImagePack) else {
                "answers": [{LABEL_FIELD: label_for(i), **fields} for i in range(len(images))]}
            return ModelAnswer(stop_reason="end_turn",
                               usage=Usage(input_tokens=1000 * len(images), output_tokens=100 * len(images)),
                               obj=obj, limits=limits if not limits.empty else self.declared)
        finally:
            t.in_flight -= 1

    def _saw(self, limits: RateLimitSnapshot, now: float) -> None:
        if not limits.empty and self.traffic.limits_known_at is None:
            self.traffic.limits_known_at = now

class Recorder:
    """Stands in for the store: the engine only records attempts."""

    def __init__(self) -> None:
        self.outcomes: Counter[tuple[str, str | None]] = Counter()
        self.settled: dict[int, str] = {}

    def record_attempt(self, job_id: int, run_id: int | None, *, commit_job: dict[str, Any] | None = None,
                       **attempt: Any) -> None:
        self.outcomes[(attempt["outcome"], attempt.get("error_type"))] += 1
        if commit_job is not None:
            self.settled[job_id] = commit_job["status"]

@dataclass
class Result:
    traffic: Traffic
    recorder: Recorder
    pacer: Pacer
    ended: float  # loop time when the engine finished
    engine: Engine | None = None

def run_engine(provider: SimProvider, images: int, *, model: str | None = None, concurrency: int = 64,
               learned: dict[str, dict[str, float]] | None = None, learned_age_s: float = 0.0,
               warm_up_gate: bool = True, per_request: int = 1, budget_usd: float | None = None,
               cache_warm: bool = False) -> Result:
    """Run the real engine over `images` images on a virtual-time loop, wired as app/runner.py wires it
    (`warm_up_gate=False`: without warmup.FirstPermitAlone, for bench/pacer_sim.py's baseline; `per_request`:
    --images-per-request, the provider answering packs as the packed schema asks; `cache_warm`: the target used
    the prompt cache minutes ago, so no request goes first)."""
    async def main() -> Result:
        loop = asyncio.get_running_loop()
        pacer = Pacer(max_concurrency=concurrency, clock=loop.time)
        pacer.observe(provider.declared_limits())
        if learned is not None:
            pacer.seed(learned, learned_age_s)
        info = catalogue().get(model or catalogue().default_model)
        preset = load_preset(PRESET)
        settings = EngineSettings(key=WorkKey(preset.version, provider.name, info.id), preset=preset, model=info,
                                  images_per_request=per_request, budget_usd=budget_usd)
        recorder = Recorder()
        wrapped = warm_cache_first(provider, cache_warm=cache_warm)
        engine = Engine(recorder, wrapped, settings,  # type: ignore[arg-type]
                        pace_warm_up(pacer, wrapped, preset, info) if warm_up_gate else pacer, None)
        await engine.run(_items(images))
        return Result(provider.traffic, recorder, pacer, loop.time(), engine)

    return virtualtime.run(main)

def run_workers(providers: list[SimProvider], images: int, *, shared_pacer: bool,
                concurrency: int = 64) -> list[Result]:
    """Several engines at once (Ray actors, each with its own client), each given every len(providers)-th
    image; with `shared_pacer` they acquire from one Pacer, as they do from the cluster's pacer actor."""
    async def main() -> list[Result]:
        loop = asyncio.get_running_loop()
        one = Pacer(max_concurrency=concurrency, clock=loop.time)
        info = catalogue().get(catalogue().default_model)
        preset = load_preset(PRESET)
        runs = []
        for provider in providers:
            pacer = one if shared_pacer else Pacer(max_concurrency=concurrency, clock=loop.time)
            settings = EngineSettings(key=WorkKey(preset.version, provider.name, info.id), preset=preset, model=info)
            recorder = Recorder()
            engine = Engine(recorder, provider, settings, pacer, None)  # type: ignore[arg-type]
            runs.append((engine, recorder, pacer, provider))
        await asyncio.gather(*(engine.run(_items(images, start=k, step=len(providers)))
                               for k, (engine, *_rest) in enumerate(runs)))
        return [Result(provider.traffic, recorder, pacer, loop.time()) for _, recorder, pacer, provider in runs]

    return virtualtime.run(main)


async def _items(n: int, start: int = 0, step: int = 1) -> AsyncIterator[WorkItem]:
    for i in range(start, n, step):
        yield WorkItem(job_id=i, sha256=f"{i:064x}", display=f"img_{i:03d}.jpg",
                       image=ImageInput(b"image %d" % i, "image/jpeg"),
                       estimate=RequestEstimate(input_tokens=1000, output_tokens=200))

def starts_within(times: list[float], start: float, seconds: float) -> int:
    return sum(1 for t in times if start <= t < start + seconds)
