"""Pacing requests to the limits a provider advertises, so concurrency grows until those limits bind.

Model: one local token bucket per advertised dimension (requests, input tokens, output tokens per minute),
refilled continuously at limit/60 per second and one second deep, mirroring how providers enforce
per-minute limits over short intervals. Buckets appear when headers first advertise a limit; until then a
small concurrency window probes (a 429 carries the headers, so the limits are learned at once).

A 429 always makes its own request wait out retry-after (the engine does that). A 429 that happened despite
pacing means our pace was wrong: every start pauses until retry-after and the pace slows multiplicatively;
successes restore it slowly (AIMD). A 429 to a request sent before any limit was known is discovery, not a
wrong pace: the bucket it reveals is drained to empty and pacing takes over at once, without a global
pause (retry-after comes in whole seconds, so pausing everyone would idle the link for most of a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from imgtag.providers.base import RateLimitSnapshot

SAFETY = 0.995         # aim just under the advertised rate: clock skew must not turn into 429s
MIN_FACTOR = 0.25
BACKOFF_WITHOUT_RETRY_AFTER = 2.0
SLOWDOWN = 0.9        # pace multiplier after a 429 despite pacing (one 429 may be mere arrival jitter)
RECOVERY = 0.02       # added back per success, up to 1
PROBE_STEP_S = 0.1     # before limits are known, the allowed concurrency doubles every step (1, 2, 4, 8...)


@dataclass
class _Bucket:
    per_minute: int
    level: float
    stamp: float

    def rate(self, factor: float) -> float:
        return self.per_minute / 60.0 * SAFETY * factor

    def capacity(self, factor: float) -> float:
        return max(1.0, self.rate(factor))

    def refill(self, now: float, factor: float) -> None:
        self.level = min(self.capacity(factor), self.level + (now - self.stamp) * self.rate(factor))
        self.stamp = now


@dataclass(frozen=True)
class Permit:
    paced: bool           # started while limits were known (a 429 then means our pace was wrong)
    input_tokens: int
    output_tokens: int


class Pacer:
    def __init__(self, *, max_concurrency: int = 64, initial_window: int = 8,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_concurrency = max_concurrency
        self.window = min(initial_window, max_concurrency)
        self.clock = clock
        self.factor = 1.0
        self.pause_until = 0.0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.rate_limited = 0
        self._buckets: dict[str, _Bucket] = {}
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._last_slowdown = -1e9
        self._probe_start: float | None = None

    @property
    def limits_known(self) -> bool:
        return bool(self._buckets)

    def describe(self) -> str:
        if not self._buckets:
            return f"no advertised limit (window {self.window})"
        rpm = self._buckets.get("requests")
        return f"{rpm.per_minute} rpm" if rpm else "token-limited"

    async def acquire(self, input_tokens: int = 0, output_tokens: int = 0) -> Permit:
        async with self._lock:  # one waiter at a time: starts are granted in FIFO order
            while True:
                now = self.clock()
                if now < self.pause_until:
                    await asyncio.sleep(self.pause_until - now)
                    continue
                cap = self.max_concurrency if self._buckets else self._probe_cap(now)
                if self.in_flight >= cap:
                    self._changed.clear()
                    # While probing, the cap also grows with time, so wake up to re-check it.
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._changed.wait(),
                                               timeout=None if self._buckets else PROBE_STEP_S)
                    continue
                wait = self._wait_for_tokens(now, input_tokens, output_tokens)
                if wait > 0:
                    await asyncio.sleep(min(wait, 0.25))  # re-check: limits or pauses may change meanwhile
                    continue
                self._take(input_tokens, output_tokens)
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                return Permit(paced=bool(self._buckets), input_tokens=input_tokens, output_tokens=output_tokens)

    def _probe_cap(self, now: float) -> int:
        """Concurrency while no limit is known: a ramp in time (a shallow bucket answers the second or third
        request with a 429 that carries the limits) bounded by a window that successes widen."""
        if self._probe_start is None:
            self._probe_start = now
        ramp = 2 ** min(10, int((now - self._probe_start) / PROBE_STEP_S))
        return max(1, min(self.window, ramp))

    def _costs(self, input_tokens: int, output_tokens: int) -> dict[str, float]:
        return {"requests": 1.0, "input": float(input_tokens), "output": float(output_tokens)}

    def _wait_for_tokens(self, now: float, input_tokens: int, output_tokens: int) -> float:
        wait = 0.0
        for name, cost in self._costs(input_tokens, output_tokens).items():
            bucket = self._buckets.get(name)
            if bucket is None or cost <= 0:
                continue
            bucket.refill(now, self.factor)
            # A request bigger than one second's worth waits for a full bucket rather than forever.
            need = min(cost, bucket.capacity(self.factor))
            if bucket.level < need:
                wait = max(wait, (need - bucket.level) / bucket.rate(self.factor))
        return wait

    def _take(self, input_tokens: int, output_tokens: int) -> None:
        for name, cost in self._costs(input_tokens, output_tokens).items():
            bucket = self._buckets.get(name)
            if bucket is not None:
                bucket.level -= min(cost, bucket.capacity(self.factor))

    def release(self, permit: Permit, *, success: bool) -> None:
        self.in_flight -= 1
        if success:
            if not self._buckets:
                self.window = min(self.max_concurrency, self.window + 1)
            self.factor = min(1.0, self.factor + RECOVERY)
        self._changed.set()

    def observe(self, snap: RateLimitSnapshot) -> None:
        """Adopt limits from response headers; never let the local view be more generous than the server's."""
        now = self.clock()
        # `remaining` is rounded down (requests) or to the nearest thousand (tokens, on the real API), so the
        # server may hold up to one unit of rounding more than it says. Clamping to the bare figure would
        # throw away most of an interval on every response when the bucket is one request deep.
        for name, limit, remaining, rounding in (
            ("requests", snap.requests_limit, snap.requests_remaining, 1.0),
            ("input", snap.input_limit, snap.input_remaining, 1000.0),
            ("output", snap.output_limit, snap.output_remaining, 1000.0),
        ):
            if not limit:
                continue
            bucket = self._buckets.get(name)
            if bucket is None:
                bucket = self._buckets[name] = _Bucket(per_minute=limit, level=0.0, stamp=now)
                bucket.level = bucket.capacity(self.factor)
            bucket.refill(now, self.factor)
            bucket.per_minute = limit
            if remaining is not None:
                bucket.level = min(bucket.level, float(remaining) + rounding)
        self._changed.set()

    def on_rate_limited(self, permit: Permit, retry_after: float | None, snap: RateLimitSnapshot) -> None:
        self.rate_limited += 1
        self.observe(snap)
        now = self.clock()
        for bucket in self._buckets.values():
            bucket.level = min(bucket.level, 0.0)
            bucket.stamp = now
        discovery = not permit.paced and not snap.empty
        if not discovery:
            self.pause_until = max(self.pause_until, now + (retry_after if retry_after is not None
                                                            else BACKOFF_WITHOUT_RETRY_AFTER))
        if not self._buckets:
            self.window = max(1, self.window // 2)
        elif permit.paced and now - self._last_slowdown > 1.0:
            # Our pace was too fast for what the server enforces: slow down, once per burst of 429s.
            self.factor = max(MIN_FACTOR, self.factor * SLOWDOWN)
            self._last_slowdown = now
