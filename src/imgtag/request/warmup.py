"""Sync mode: the first request of a run warms the prompt cache before the others start.

A cache entry exists only once a first response begins (api-facts E), so N requests sent together all pay
the 1.25x write for the shared prefix. When the prefix is cached (pricing/prefix.py), one request goes first
and the rest wait until its answer begins, then read the prefix at 0.1x. The first request streams, so
"begins" is its `message_start` event: the wait is the time to first token, not the whole answer. It is
skipped when the same target used the cache within the last 4 minutes (the entry is still there). If the
first request fails before its answer begins, the next one waiting takes its place. The requests that wait
take no pacer permit meanwhile (FirstPermitAlone).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from imgtag.presets import Preset
from imgtag.pricing.catalogue import ModelInfo
from imgtag.pricing.prefix import plan_prefix
from imgtag.providers.base import ImageInput, ModelAnswer, Provider, RateLimitSnapshot, RequestOptions
from imgtag.request.pacer import Pacer, Permit


class CacheWarmup(Provider):
    """Wraps a provider for the sync engine; everything but the first requests passes straight through."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name
        self.warm = False  # an answer has begun: the cache entry exists
        self._leader: asyncio.Event | None = None  # set when the request in front begins answering, or ends
        self._when_warm: list[Callable[[RateLimitSnapshot], None]] = []

    def when_warm(self, callback: Callable[[RateLimitSnapshot], None]) -> None:
        """Call `callback` once, when the first answer begins, with the rate limits its headers carried."""
        self._when_warm.append(callback)

    def _warmed(self, limits: RateLimitSnapshot) -> None:
        if not self.warm:
            self.warm = True
            for callback in self._when_warm:
                callback(limits)

    async def describe(self, image: ImageInput, options: RequestOptions) -> ModelAnswer:
        if self.warm or not plan_prefix(options.preset, options.model).cache:
            return await self.inner.describe(image, options)
        while not self.warm:
            if self._leader is None:
                return await self._lead(image, options)
            await self._leader.wait()
        return await self.inner.describe(image, options)

    async def _lead(self, image: ImageInput, options: RequestOptions) -> ModelAnswer:
        leader = self._leader = asyncio.Event()

        def began(limits: RateLimitSnapshot) -> None:
            if options.began is not None:
                options.began(limits)  # the engine's: the pacer reads the headers
            self._warmed(limits)
            leader.set()

        try:
            answer = await self.inner.describe(image, replace(options, began=began))
            self._warmed(answer.limits)  # a provider that cannot tell when its answer begins: its end says it
            return answer
        finally:
            self._leader = None
            leader.set()

    async def ready(self) -> None:
        await self.inner.ready()

    async def aclose(self) -> None:
        await self.inner.aclose()


# The prefix cache lives 5 minutes from its last use; a run starting within this of the last cache read or
# write of the same target finds it still there, so holding everything back for a first answer buys nothing.
CACHE_STILL_WARM_S = 240.0


def warm_cache_first(provider: Provider, *, cache_warm: bool = False) -> Provider:
    """The Anthropic provider gets the warm-up, unless its cache is known to be warm already (`cache_warm`);
    others (no documented prompt cache to warm) are left alone."""
    return CacheWarmup(provider) if provider.name == "anthropic" and not cache_warm else provider


def needs_warm_up(provider: Provider, preset: Preset, model: ModelInfo, *, cache_warm: bool) -> bool:
    """Whether a run's first request should go alone: the provider has a prompt cache to warm, the preset's
    prefix is cached on this model, and the cache is not known to be warm (`--engine ray` asks this once, for
    the whole cluster)."""
    return provider.name == "anthropic" and not cache_warm and plan_prefix(preset, model).cache


class FirstPermitAlone:
    """The engine's pacer while the warm-up runs: one permit, then none until that request's answer begins
    (`open`) or a permit comes back.

    Requests that wait for the warm-up must not hold pacer permits meanwhile. The pacer counts a permit as a
    request the server has seen (or soon will), with the refill since; a permit held back by the warm-up
    reaches the server only with the first answer, when the server's bucket has long been full and refilled
    nothing, so the pacer would believe in more than the server holds and overrun it at the start of each run.
    Every permit the engine takes comes back (answered, failed or abandoned), so the gate always opens."""

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer
        self._first: Permit | None = None
        self._first_out = False
        self._open = asyncio.Event()

    async def acquire(self, input_tokens: int = 0, output_tokens: int = 0) -> Permit:
        if not self._open.is_set():
            if self._first_out:
                await self._open.wait()
                return await self.pacer.acquire(input_tokens, output_tokens)
            self._first_out = True
            self._first = await self.pacer.acquire(input_tokens, output_tokens)
            return self._first
        return await self.pacer.acquire(input_tokens, output_tokens)

    def open(self, limits: RateLimitSnapshot) -> None:
        """The first answer has begun. Its headers came with its first byte: the pacer learns the server's
        limits now, not at the end of the answer, so the waiting requests start at the server's pace (a cold
        pacer would otherwise probe 1, 2, 4... until some answer is complete)."""
        if not self._open.is_set() and self._first is not None and not limits.empty:
            self.pacer.observe(limits, self._first)
        self._open.set()

    def release(self, permit: Permit, *, success: bool) -> None:
        self.pacer.release(permit, success=success)
        self._open.set()

    def __getattr__(self, name: str) -> Any:  # observe, on_rate_limited, counters: the pacer's own
        return getattr(self.pacer, name)


def pace_warm_up(pacer: Pacer, provider: Provider, preset: Preset, model: ModelInfo) -> Pacer:
    """The pacer the engine should use with `provider` (as wrapped by warm_cache_first)."""
    if isinstance(provider, CacheWarmup) and plan_prefix(preset, model).cache:
        gate = FirstPermitAlone(pacer)
        provider.when_warm(gate.open)
        return gate  # type: ignore[return-value]  # duck-types the Pacer, as RemotePacer does
    return pacer
