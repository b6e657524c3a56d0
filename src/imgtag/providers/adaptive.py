"""Adaptive concurrency for servers that advertise no limits (vLLM, Ollama, LM Studio, llama.cpp on a GPU).

A local server has a fixed number of slots (batch size, OLLAMA_NUM_PARALLEL, LM Studio's "Max Concurrent
Predictions") and queues the rest. Below that number, latency is flat; above it, requests only wait in the
server's queue: latency grows with the excess and throughput stays the same (or the server answers 503
once its queue is full). So the useful concurrency is the largest one at which latency is still flat.

Algorithm (one adjustment per "round" = as many completions as the current limit):
- the baseline is the round-median latency with no queue (the server's service time; see _sample);
- median within GROW_BELOW x baseline: grow (doubling until the first sign of queueing, then by a quarter);
- median above SHRINK_ABOVE x baseline: shrink to about limit x baseline / median, the concurrency at which
  the queue would be empty; in between: hold;
- a 503, timeout or dropped connection halves the limit at once (once per limit, not once per failed request).
Requests past the limit wait here, not in the server's queue, where a timeout would waste them.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Callable

GROW_BELOW = 1.1     # latency within 10% of the baseline: no queue (jitter stays well inside that)
SHRINK_ABOVE = 1.3   # queueing: back off to where the queue would be empty


class AdaptiveLimiter:
    def __init__(self, *, initial: int = 4, minimum: int = 1, maximum: int = 256,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = max(minimum, min(initial, maximum))
        self.minimum, self.maximum = minimum, maximum
        self.clock = clock
        self.in_flight = 0
        self.enabled = True
        self.slow_start = True
        self.peak_limit = self.limit
        self._samples: list[float] = []
        self._epoch = float("-inf")  # when the limit last changed
        self._baseline: float | None = None
        self._baseline_limit = 0
        self._changed = asyncio.Condition()

    def disable(self) -> None:
        """The server advertises rate limits after all: the pacer paces it; stop limiting here."""
        self.enabled = False

    async def acquire(self) -> float:
        async with self._changed:
            await self._changed.wait_for(lambda: not self.enabled or self.in_flight < self.limit)
            self.in_flight += 1
        return self.clock()

    async def release(self, started: float, outcome: str) -> None:
        """outcome: "ok" (a latency sample), "congested" (503/timeout/drop: shrink now), "other" (no signal)."""
        async with self._changed:
            self.in_flight -= 1
            if outcome == "ok" and started >= self._epoch:
                # Only requests started under the current limit say anything about it: a request that
                # queued behind an older, larger limit would make the shrink repeat itself.
                self._sample(self.clock() - started)
            elif outcome == "congested" and started >= self._epoch:
                # Once per limit: a burst of 503s from requests sent under the old limit is one signal.
                self._set(max(self.minimum, self.limit // 2))
                self.slow_start = False
            self._changed.notify_all()

    def _sample(self, latency: float) -> None:
        self._samples.append(latency)
        if len(self._samples) < self.limit:
            return
        median = statistics.median(self._samples)
        self._samples.clear()
        # The baseline is the service time. A round at a limit no higher than where the baseline was measured
        # may raise it (the work got heavier: larger images, longer answers); a round at a higher limit may
        # only lower it, or a limit camping above the server's capacity would slowly count its queue as normal.
        if self._baseline is None or median < self._baseline or self.limit <= self._baseline_limit:
            self._baseline, self._baseline_limit = median, self.limit
        ratio = median / self._baseline if self._baseline > 0 else 1.0
        if ratio <= GROW_BELOW:
            # Flat: double until the first sign of a queue, then grow by a quarter (+1 alone would take minutes).
            self._set(min(self.maximum, self.limit + (self.limit if self.slow_start else max(1, self.limit // 4))))
        elif ratio > SHRINK_ABOVE:
            self.slow_start = False
            # Rounded up: one request too many only waits in the queue; one too few idles a slot.
            self._set(max(self.minimum, min(self.limit - 1, math.ceil(self.limit / ratio * 1.1))))
        else:
            self.slow_start = False  # a short queue: hold here

    def _set(self, limit: int) -> None:
        if limit != self.limit:
            self.limit = limit
            self._epoch = self.clock()
            self._samples.clear()
        self.peak_limit = max(self.peak_limit, self.limit)

    def describe(self) -> str:
        return f"adaptive concurrency {self.limit}" if self.enabled else "paced by advertised limits"
