"""The engine's graceful stop on a virtual clock (tests/virtualtime.py, tests/serversim.py): what it waits for,
for how long, and what it never sends. The CLI's signals around it are tests/test_interrupt_drain.py."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import virtualtime
from imgtag.presets import load_preset
from imgtag.pricing.catalogue import catalogue
from imgtag.providers.base import ImageInput, ModelAnswer, RequestOptions, Transient
from imgtag.request.engine import Engine, EngineSettings, StopReport
from imgtag.request.pacer import Pacer
from imgtag.request.warmup import pace_warm_up, warm_cache_first
from imgtag.store import WorkKey
from serversim import PRESET, Recorder, SimProvider, TokenBucket, _items

IMAGES = 40


class WireSim(SimProvider):
    """As the real providers do: the call itself inside `on_the_wire()`, after any wait of the provider's own."""

    counts_on_the_wire = True

    async def describe(self, image: ImageInput, options: RequestOptions) -> ModelAnswer:
        with self.on_the_wire():
            return await super().describe(image, options)


def stopped_run(provider: SimProvider, *, stop_at: float, grace_s: float, concurrency: int = 8,
                cache_warm: bool = True) -> tuple[Recorder, StopReport, float, float]:
    """The engine over IMAGES images, stopped gracefully `stop_at` seconds in: what was stored, the stop's report,
    when the stop came and when `run` returned (loop time)."""
    async def main() -> tuple[Recorder, StopReport, float, float]:
        loop = asyncio.get_running_loop()
        pacer = Pacer(max_concurrency=concurrency, clock=loop.time)
        info = catalogue().get(catalogue().default_model)
        preset = load_preset(PRESET)
        recorder = Recorder()
        wrapped = warm_cache_first(provider, cache_warm=cache_warm)
        engine = Engine(recorder, wrapped,  # type: ignore[arg-type]
                        EngineSettings(key=WorkKey(preset.version, provider.name, info.id), preset=preset,
                                       model=info, backoff_base_s=5.0),
                        pace_warm_up(pacer, wrapped, preset, info), None)
        running = asyncio.create_task(engine.run(_items(IMAGES)))
        await asyncio.sleep(stop_at)
        stopped = loop.time()
        report = engine.stop(grace_s, on_the_wire=provider.traffic.in_flight)
        await running
        return recorder, report, stopped, loop.time()

    return virtualtime.run(main)


def test_the_requests_on_the_wire_are_answered_and_stored_and_nothing_new_is_sent() -> None:
    provider = SimProvider(TokenBucket(rpm=6000, burst_s=60, now=virtualtime.START), name="sim", latency_s=10.0)
    recorder, report, stopped, ended = stopped_run(provider, stop_at=2.0, grace_s=30.0)
    t = provider.traffic
    assert report.waiting_for == len(t.sent) == 8  # --concurrency 8, all sent at once, none after the stop
    assert all(sent <= stopped for sent in t.sent)
    assert ended - stopped < 9.0  # the answers' remaining time, not the bound
    assert recorder.outcomes[("ok", None)] == 8 == report.answered == sum(t.answered.values())
    assert report.abandoned == 0 and report.dropped == 0


def test_the_bound_gives_up_on_answers_that_do_not_come() -> None:
    provider = SimProvider(TokenBucket(rpm=6000, burst_s=60, now=virtualtime.START), name="sim", latency_s=600.0)
    recorder, report, stopped, ended = stopped_run(provider, stop_at=2.0, grace_s=30.0)
    assert abs(ended - stopped - 30.0) < 0.1
    assert report.abandoned == 8 and report.answered == 0
    assert not recorder.settled  # abandoned: pending, as after an abort


def test_a_request_waiting_inside_the_provider_is_never_sent() -> None:
    # The cache warm-up: one request goes first, the others wait inside the provider for its answer to begin.
    provider = WireSim(TokenBucket(rpm=6000, burst_s=60, now=virtualtime.START), name="anthropic", latency_s=10.0,
                       ttft_s=5.0)
    recorder, report, stopped, ended = stopped_run(provider, stop_at=1.0, grace_s=30.0, cache_warm=False)
    t = provider.traffic
    assert len(t.sent) == 1 and report.waiting_for == 1  # the leader alone; the rest never reach the wire
    assert recorder.outcomes[("ok", None)] == 1 and len(recorder.settled) == 1
    assert ended - stopped < 10.0


class FailingFirst(SimProvider):
    """Every request but the first ones fails at once (the first ones answer after `latency_s`)."""

    async def describe(self, image: ImageInput, options: RequestOptions) -> ModelAnswer:
        if self.traffic.in_flight >= 2:
            self.traffic.sent.append(asyncio.get_running_loop().time())
            raise Transient("server error (500)", http_status=500)
        return await super().describe(image, options)


def test_requests_waiting_out_a_retry_are_dropped_not_asked_again() -> None:
    provider = FailingFirst(TokenBucket(rpm=6000, burst_s=60, now=virtualtime.START), name="sim", latency_s=10.0)
    recorder, report, stopped, ended = stopped_run(provider, stop_at=2.0, grace_s=30.0)
    t = provider.traffic
    assert all(sent <= stopped for sent in t.sent)
    assert report.answered == 2 and recorder.outcomes[("ok", None)] == 2
    assert "failed" not in recorder.settled.values()  # pending, not failed: nothing was answered
    assert ended - stopped < 9.0  # not the retries' backoff


class CancelLosingPacer(Pacer):
    """What Python 3.11's asyncio.wait_for (inside Pacer.acquire) does when a permit frees up just as the waiting
    task is cancelled: it returns the permit and the cancel is lost (the task still counts it: `cancelling()`)."""

    async def acquire(self, input_tokens: int = 0, output_tokens: int = 0) -> Any:
        try:
            return await super().acquire(input_tokens, output_tokens)
        except asyncio.CancelledError:
            return await super().acquire(input_tokens, output_tokens)


def test_an_abort_sends_nothing_new_even_when_the_permit_wait_loses_the_cancel() -> None:
    # A cancelled `atag` or a second Ctrl-C cancels the run: the requests in flight are cancelled, which frees
    # their permits, and the dispatcher waiting for one must not take it and send the next image.
    provider = SimProvider(TokenBucket(rpm=6000, burst_s=60, now=virtualtime.START), name="sim", latency_s=10.0)

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        pacer = CancelLosingPacer(max_concurrency=2, clock=loop.time)
        info = catalogue().get(catalogue().default_model)
        preset = load_preset(PRESET)
        engine = Engine(Recorder(), provider,  # type: ignore[arg-type]
                        EngineSettings(key=WorkKey(preset.version, provider.name, info.id), preset=preset,
                                       model=info), pacer, None)
        running = asyncio.create_task(engine.run(_items(IMAGES)))
        await asyncio.sleep(2.0)
        cancelled = loop.time()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        return cancelled, loop.time()

    cancelled, ended = virtualtime.run(main)
    assert len(provider.traffic.sent) == 2  # the two in flight; nothing after the cancel
    assert ended - cancelled < 1.0  # not the answers' 10 s
