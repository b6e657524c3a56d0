"""One rate limit across the cluster: a named Ray actor holds imgtag's Pacer; every worker acquires from it.

The Pacer is used only through its public methods (acquire, release, observe, on_rate_limited, describe and
its counters), so changes inside it apply here unchanged. The actor is async: thousands of acquires wait on
the pacer's own asyncio lock in one event loop, exactly as the engine's tasks do on one machine. Its
`max_concurrency` is also the cluster-wide cap on requests in flight to this endpoint (self-hosted servers).

`RemotePacer` is what a worker hands to imgtag's Engine in place of a local Pacer: same methods; releases and
observations are sent without waiting (Ray delivers one caller's calls in order)."""

from __future__ import annotations

import hashlib
from typing import Any

from imgtag.providers.base import RateLimitSnapshot
from imgtag.request.pacer import Pacer, Permit
from imgtag.request.warmup import FirstPermitAlone

NAMESPACE = "imgtag"
ACTOR_CONCURRENCY = 10_000  # waiting acquires are coroutines in the actor's loop, not threads


def pacer_name(provider: str, endpoint: str | None, model: str) -> str:
    """One pacer per provider endpoint and model: that is what an account's limit (or a server) applies to."""
    digest = hashlib.sha256(f"{provider}\0{endpoint or ''}\0{model}".encode()).hexdigest()[:16]
    return f"imgtag-pacer-{digest}"


class PacerActor:
    def __init__(self, max_concurrency: int, declared: RateLimitSnapshot) -> None:
        self.base = Pacer(max_concurrency=max_concurrency)
        self.base.observe(declared)
        self.pacer: Pacer | FirstPermitAlone = self.base

    async def warm_up(self) -> None:
        """The prompt cache is cold: one permit goes out, the rest wait until that request's answer begins
        (`began`) or its permit comes back, so the whole cluster pays one cache write (request/warmup.py), not
        one per request its actors start together."""
        self.pacer = FirstPermitAlone(self.base)

    async def began(self, snap: RateLimitSnapshot) -> None:
        if isinstance(self.pacer, FirstPermitAlone):
            self.pacer.open(snap)

    async def acquire(self, input_tokens: int, output_tokens: int) -> Permit:
        return await self.pacer.acquire(input_tokens, output_tokens)

    async def release(self, permit: Permit, success: bool) -> None:
        self.pacer.release(permit, success=success)

    async def observe(self, snap: RateLimitSnapshot, permit: Permit | None = None) -> None:
        self.pacer.observe(snap, permit)

    async def on_rate_limited(self, permit: Permit, retry_after: float | None, snap: RateLimitSnapshot) -> None:
        self.pacer.on_rate_limited(permit, retry_after, snap)

    async def learned(self) -> dict[str, dict[str, float]]:
        return self.base.learned()

    async def seed(self, learned: dict[str, dict[str, float]], age_s: float) -> None:
        self.base.seed(learned, age_s)

    async def view(self) -> dict[str, Any]:
        p = self.base
        return {"pace": p.describe(), "limits_known": p.limits_known, "in_flight": p.in_flight,
                "peak_in_flight": p.peak_in_flight, "rate_limited": p.rate_limited}


def get_or_create(name: str, max_concurrency: int, declared: RateLimitSnapshot) -> Any:
    """The named actor (shared with any other driver on the same endpoint), created if missing."""
    import ray

    actor_cls = ray.remote(PacerActor)
    return actor_cls.options(name=name, namespace=NAMESPACE, get_if_exists=True, num_cpus=0,
                             max_concurrency=ACTOR_CONCURRENCY).remote(max_concurrency, declared)


class RemotePacer:
    """Duck-types the Pacer for imgtag's Engine inside a worker."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.in_flight = 0
        self.peak_in_flight = 0
        self.rate_limited = 0

    async def acquire(self, input_tokens: int = 0, output_tokens: int = 0) -> Permit:
        permit: Permit = await self.handle.acquire.remote(input_tokens, output_tokens)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        return permit

    def release(self, permit: Permit, *, success: bool) -> None:
        self.in_flight -= 1
        self.handle.release.remote(permit, success)

    def observe(self, snap: RateLimitSnapshot, permit: Permit | None = None) -> None:
        if not snap.empty:  # an answer without rate-limit headers tells the pacer nothing: no message
            self.handle.observe.remote(snap, permit)

    def on_rate_limited(self, permit: Permit, retry_after: float | None, snap: RateLimitSnapshot) -> None:
        self.rate_limited += 1
        self.handle.on_rate_limited.remote(permit, retry_after, snap)

    def began(self, snap: RateLimitSnapshot) -> None:
        """This worker's first answer began: the prompt cache entry exists; the cluster's warm-up gate opens."""
        self.handle.began.remote(snap)

    def describe(self) -> str:
        return "cluster pacer"


class PacerView:
    """The driver's handle on the actor's learned limits, shaped like the Pacer that `learned_limits.Memory`
    seeds at the start of a run and saves at the end (so a cluster run starts at the pace the last run found)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def learned(self) -> dict[str, dict[str, float]]:
        import ray

        return ray.get(self.handle.learned.remote(), timeout=30)

    def seed(self, learned: dict[str, dict[str, float]], age_s: float) -> None:
        import ray

        ray.get(self.handle.seed.remote(learned, age_s), timeout=30)

    @property
    def limits_known(self) -> bool:
        import ray

        return bool(ray.get(self.handle.view.remote(), timeout=30)["limits_known"])


class Lease:
    """Held by the driver for the length of a run (named after the store, owned by the driver's job). When the
    driver dies, Ray ends its job and this actor with it: workers check it before each batch and stop asking,
    and a new driver for the same store waits until the old lease is gone before planning."""

    async def alive(self) -> bool:
        return True


def lease_name(store_id: str) -> str:
    return f"imgtag-lease-{store_id}"


def take_lease(store_id: str, wait_s: float = 60.0) -> Any:
    import time

    import ray

    name = lease_name(store_id)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            break  # no earlier run of this store is still winding down
        if time.monotonic() > deadline:
            raise RuntimeError(f"an earlier run on this output folder still holds {name} on the cluster")
        time.sleep(0.2)
    return ray.remote(Lease).options(name=name, namespace=NAMESPACE, num_cpus=0).remote()
