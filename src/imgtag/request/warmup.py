"""Sync mode: the first request of a run warms the prompt cache before the others start.

A cache entry exists only once a first response begins (api-facts E), so N requests sent together all pay
the 1.25x write for the shared prefix. When the prefix is cached (pricing/prefix.py), one request goes first
and the rest wait for its answer, then read the prefix at 0.1x. The wait costs one request's latency, once
per run, and is skipped when the same target used the cache within the last 4 minutes (the entry is still
there). If the first request fails, the next one waiting takes its place. The requests that wait take no
pacer permit until the first one is back (FirstPermitAlone).
"""

from __future__ import annotations

import asyncio
from typing import Any

from imgtag.presets import Preset
from imgtag.pricing.catalogue import ModelInfo
from imgtag.pricing.prefix import plan_prefix
from imgtag.providers.base import ImageInput, ModelAnswer, Provider, RequestOptions
from imgtag.request.pacer import Pacer, Permit


class CacheWarmup(Provider):
    """Wraps a provider for the sync engine; everything but the first requests passes straight through."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name
        self.warm = False
        self._leader: asyncio.Event | None = None  # set when the request in front finishes, either way

    async def describe(self, image: ImageInput, options: RequestOptions) -> ModelAnswer:
        if self.warm or not plan_prefix(options.preset, options.model).cache:
            return await self.inner.describe(image, options)
        while not self.warm:
            if self._leader is None:
                done = self._leader = asyncio.Event()
                try:
                    answer = await self.inner.describe(image, options)
                    self.warm = True
                    return answer
                finally:
                    self._leader = None
                    done.set()
            await self._leader.wait()
        return await self.inner.describe(image, options)

    async def aclose(self) -> None:
        await self.inner.aclose()


# The prefix cache lives 5 minutes from its last use; a run starting within this of the last cache read or
# write of the same target finds it still there, so holding everything back for a first answer buys nothing.
CACHE_STILL_WARM_S = 240.0


def warm_cache_first(provider: Provider, *, cache_warm: bool = False) -> Provider:
    """The Anthropic provider gets the warm-up, unless its cache is known to be warm already (`cache_warm`);
    others (no documented prompt cache to warm) are left alone."""
    return CacheWarmup(provider) if provider.name == "anthropic" and not cache_warm else provider


class FirstPermitAlone:
    """The engine's pacer while the warm-up runs: one permit, then none until a permit comes back.

    Requests that wait for the warm-up must not hold pacer permits meanwhile. The pacer counts a permit as a
    request the server has seen (or soon will), with the refill since; a permit held back by the warm-up
    reaches the server only with the first answer, when the server's bucket has long been full and refilled
    nothing, so the pacer would believe in more than the server holds and overrun it at the start of each run.
    Every permit the engine takes comes back (answered, failed or abandoned), so the gate always opens."""

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer
        self._first_out = False
        self._open = asyncio.Event()

    async def acquire(self, input_tokens: int = 0, output_tokens: int = 0) -> Permit:
        if not self._open.is_set():
            if self._first_out:
                await self._open.wait()
            self._first_out = True
        return await self.pacer.acquire(input_tokens, output_tokens)

    def release(self, permit: Permit, *, success: bool) -> None:
        self.pacer.release(permit, success=success)
        self._open.set()

    def __getattr__(self, name: str) -> Any:  # observe, on_rate_limited, counters: the pacer's own
        return getattr(self.pacer, name)


def pace_warm_up(pacer: Pacer, provider: Provider, preset: Preset, model: ModelInfo) -> Pacer:
    """The pacer the engine should use with `provider` (as wrapped by warm_cache_first)."""
    if isinstance(provider, CacheWarmup) and plan_prefix(preset, model).cache:
        return FirstPermitAlone(pacer)  # type: ignore[return-value]  # duck-types the Pacer, as RemotePacer does
    return pacer
