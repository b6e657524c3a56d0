"""Pacing requests to the limits a provider advertises, so concurrency grows until those limits bind.

Model: one local token bucket per advertised dimension (requests, input tokens, output tokens per minute),
refilled continuously at limit/60 per second. Buckets appear when headers first advertise a limit; until then
a small concurrency window probes (a 429 carries the headers, so the limits are learned at once).

The server's bucket is the truth. Every answer's `*-remaining` says what the server held when it counted that
request; the local level is set from it, minus what we started since (the server has counted those too, their
answers are still on the way) plus the refill since. So a server that grants a burst (a bucket several seconds
deep) gets it spent, and one that grants less is never overrun. The local bucket's depth is the largest
`remaining` the server has shown, at least one second of rate: one request short of the server's own depth
(`remaining` + the request it had just counted). That request is a cushion for arrival order: the server's
bucket starts refilling when a burst's first request *arrives*, ours when it is *sent*, and a request that waits
for a new connection can arrive after later ones. Spending the full depth instead saved 0.1-0.2 s of a 27 s run in
bench/endtoend.py and met one 429 per run (each pausing every start until retry-after). Learned limits can be
saved and given to the next run (`learned()` / `seed()`), which then starts at the known pace, not cold.

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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from imgtag.providers.base import RateLimitSnapshot

SAFETY = 0.995         # aim just under the advertised rate: clock skew must not turn into 429s
MIN_FACTOR = 0.25
BACKOFF_WITHOUT_RETRY_AFTER = 2.0
SLOWDOWN = 0.9        # pace multiplier after a 429 despite pacing (one 429 may be mere arrival jitter)
RECOVERY = 0.02       # added back per success, up to 1
PROBE_STEP_S = 0.1     # before limits are known, the allowed concurrency doubles every step (1, 2, 4, 8...)
# A request we started this recently may not have reached the server when it computed the `remaining` we are
# reading (the SDK still encoding it, a busy event loop): count it as not yet seen by the server.
IN_TRANSIT_S = 0.25


@dataclass
class _Bucket:
    per_minute: int
    level: float
    stamp: float
    depth: float = 0.0    # the largest burst the server has shown (0: none seen yet)

    def rate(self, factor: float) -> float:
        return self.per_minute / 60.0 * SAFETY * factor

    def capacity(self, factor: float) -> float:
        return max(1.0, self.rate(factor), self.depth * factor)

    def refill(self, now: float, factor: float) -> None:
        self.level = min(self.capacity(factor), self.level + (now - self.stamp) * self.rate(factor))
        self.stamp = now


@dataclass(eq=False)  # one per request; `observed` changes once
class Permit:
    paced: bool           # started while limits were known (a 429 then means our pace was wrong)
    input_tokens: int
    output_tokens: int
    started: float = 0.0  # clock time of the start
    # per dimension, everything started up to and including this start: what started later is known to the
    # server by the time this request's answer says what remains
    spent_after_start: tuple[tuple[str, float], ...] = ()
    # Its answer's headers were adopted already. They are the server's count from when the request arrived: a
    # streamed answer brings them with its first byte (request/warmup.py adopts them then) and the engine sees
    # them again at the end. The second look may only lower the level: the server's bucket may have been full
    # meanwhile and dropped refill that the arithmetic below would count.
    observed: bool = False


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
        self._recent: deque[tuple[float, str, float]] = deque()  # (start time, dimension, cost) of recent starts
        self._totals: dict[str, float] = {}  # per dimension, everything ever started

    @property
    def limits_known(self) -> bool:
        return bool(self._buckets)

    def describe(self) -> str:
        if not self._buckets:
            # The server has not said its limits yet: say what we do meanwhile, in words a user knows.
            from imgtag.util.words import plural

            return f"learning the rate limit, {plural(self.window, 'request')} at a time"
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
                return Permit(paced=bool(self._buckets), input_tokens=input_tokens, output_tokens=output_tokens,
                              started=now, spent_after_start=tuple(self._totals.items()))

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
        now = self.clock()
        for name, cost in self._costs(input_tokens, output_tokens).items():
            # Counted whether or not a limit is known yet: answers to probe requests need it too.
            self._totals[name] = self._totals.get(name, 0.0) + cost
            if cost > 0:
                self._recent.append((now, name, cost))
            bucket = self._buckets.get(name)
            if bucket is not None:
                bucket.level -= min(cost, bucket.capacity(self.factor))
        self._in_transit("requests", now, now)  # prunes: the window stays a fraction of a second long

    def release(self, permit: Permit, *, success: bool) -> None:
        self.in_flight -= 1
        if success:
            if not self._buckets:
                self.window = min(self.max_concurrency, self.window + 1)
            self.factor = min(1.0, self.factor + RECOVERY)
        self._changed.set()

    def observe(self, snap: RateLimitSnapshot, permit: Permit | None = None) -> None:
        """Adopt limits from response headers. With the permit of the request they answer, the server's
        `remaining` becomes the local level (up or down); without one, it only ever lowers it."""
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
            if remaining is None:
                continue
            # The server held at least `remaining` after counting some request: that much burst is granted.
            bucket.depth = max(bucket.depth, float(remaining))
            if permit is None or permit.observed:  # e.g. a 429 or declared limits: never more generous
                bucket.level = min(bucket.level, float(remaining) + rounding)
                continue
            spent_then = dict(permit.spent_after_start).get(name, 0.0)
            # If the server counted this request on arrival (just after it started) and reported what was left
            # then, it has since counted what we started after it and refilled for the time since. If it
            # reported what was left when it answered, `remaining` is already current. Take the smaller.
            started_since = self._totals.get(name, 0.0) - spent_then
            refilled = (now - permit.started) * bucket.rate(self.factor)
            server_now = min(float(remaining) - started_since + refilled, float(remaining))
            # Within the rounding band the local level stands: raising it to the top of the band on every
            # answer would overdraw by up to one unit each time, lowering it to the bottom would idle. Raise
            # only past what we started so recently that the server may not have counted it yet.
            if bucket.level > server_now + rounding:
                bucket.level = server_now + rounding
            else:
                raise_to = min(server_now, float(remaining) - self._in_transit(name, now, permit.started))
                if bucket.level < raise_to:
                    bucket.level = min(bucket.capacity(self.factor), raise_to)
        if permit is not None and not snap.empty:
            permit.observed = True
        self._changed.set()

    def _in_transit(self, name: str, now: float, after: float) -> float:
        """What was started after `after` and so recently that the server may not have counted it yet."""
        while self._recent and self._recent[0][0] < now - IN_TRANSIT_S:
            self._recent.popleft()
        return sum(cost for t, n, cost in self._recent if n == name and t > after)

    # -- learned limits, for the next run ------------------------------------------------------------

    def learned(self) -> dict[str, dict[str, float]]:
        """Per bucket: advertised per-minute limit, burst depth seen, and the level now (to age at seed)."""
        now = self.clock()
        out: dict[str, dict[str, float]] = {}
        for name, bucket in self._buckets.items():
            bucket.refill(now, self.factor)
            out[name] = {"per_minute": bucket.per_minute, "depth": bucket.depth, "level": bucket.level}
        return out

    def seed(self, learned: dict[str, dict[str, float]], age_s: float) -> None:
        """Start from limits a previous run learned `age_s` seconds ago: the known pace at once, with the
        level that run left refilled for the time since (a just-finished run may have emptied the bucket).
        Answers then correct it as usual; a wrong guess costs one paced 429, not a cold start."""
        now = self.clock()
        for name, data in learned.items():
            if name in self._buckets or name not in ("requests", "input", "output"):
                continue
            per_minute = int(data.get("per_minute") or 0)
            if per_minute <= 0:
                continue
            bucket = _Bucket(per_minute=per_minute, level=0.0, stamp=now, depth=float(data.get("depth") or 0.0))
            level = float(data.get("level") or 0.0) + max(0.0, age_s) * bucket.rate(self.factor)
            bucket.level = min(bucket.capacity(self.factor), level)
            self._buckets[name] = bucket
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
