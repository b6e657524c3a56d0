"""Sync mode: the first request of a run warms the prompt cache before the others start.

A cache entry exists only once a first response begins (api-facts E), so N requests sent together all pay
the 1.25x write for the shared prefix. When the prefix is cached (pricing/prefix.py), one request goes first
and the rest wait for its answer, then read the prefix at 0.1x. The wait costs one request's latency, once
per run. If the first request fails, the next one waiting takes its place.
"""

from __future__ import annotations

import asyncio

from imgtag.pricing.prefix import plan_prefix
from imgtag.providers.base import ImageInput, ModelAnswer, Provider, RequestOptions


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


def warm_cache_first(provider: Provider) -> Provider:
    """The Anthropic provider gets the warm-up; others (no documented prompt cache to warm) are left alone."""
    return CacheWarmup(provider) if provider.name == "anthropic" else provider
