"""What the batch submitter, collector and runner share: context (with the provider's BatchAPI), counters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imgtag.config.options import option
from imgtag.events import Events
from imgtag.providers.base import Fatal, Provider, ProviderError
from imgtag.store import Store

if TYPE_CHECKING:
    from imgtag.config.runconfig import RunConfig, Target
    from imgtag.providers.batch_api import BatchAPI

MAX_POLL_INTERVAL_S = 60.0
POLL_BACKOFF = 1.5


class BatchStop(Exception):
    """End the batch run: a Fatal error (exit 2) or a reason to stop early (exit 1, work stays pending)."""

    def __init__(self, message: str, fatal: Fatal | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fatal = fatal


@dataclass
class BatchStats:
    ok: int = 0
    failed: int = 0
    requeued: int = 0              # items sent back to pending (errored/expired/canceled/missing)
    submitted: int = 0             # items in batches created by this run
    created: int = 0               # batches created by this run
    adopted: int = 0               # batches found remotely after a crash between create and commit
    spent_usd: float = 0.0
    reserved_usd: float = 0.0      # estimated batch cost of items submitted by this run
    budget_skipped: int = 0
    # batch id -> (processing_status, request_counts): what the progress line shows.
    live: dict[str, tuple[str, dict[str, int]]] = field(default_factory=dict)
    # batch id -> images per request, where a batch carries packs (--images-per-request); 1 when absent.
    images_per_request: dict[str, float] = field(default_factory=dict)

    @property
    def in_batches(self) -> int:
        """Images (not requests) still processing on the server."""
        return round(sum(counts.get("processing", 0) * self.images_per_request.get(batch_id, 1.0)
                         for batch_id, (_, counts) in self.live.items()))

    def describe(self) -> str:
        if not self.live:
            return "no live batches"
        states = Counter(status for status, _ in self.live.values())
        totals: Counter[str] = Counter()
        for _, counts in self.live.values():
            totals.update(counts)
        by_state = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        counts_text = ", ".join(f"{k} {v}" for k, v in totals.items() if v)
        return f"batches {by_state}" + (f" ({counts_text})" if counts_text else "")


# A job settled from a batch result: (job id, "ok"/"failed", this run's cost of its answers (None: unknown prices),
# error type). The run turns it into image_done events.
ImageSettled = Callable[[int, str, float | None, str | None], None]


@dataclass
class BatchContext:
    store: Store
    provider: Provider
    target: Target
    cfg: RunConfig
    run_id: int | None
    stats: BatchStats = field(default_factory=BatchStats)
    events: Events = field(default_factory=lambda: Events(None))
    on_image: ImageSettled | None = None
    paid: dict[int, float | None] = field(default_factory=dict)  # job id -> cost of its answers so far (on_image)
    _api: BatchAPI | None = field(default=None, init=False, repr=False)

    @property
    def api(self) -> BatchAPI:
        """The provider's batch API; a provider without one stops the run with a sentence (exit 2)."""
        if self._api is None:
            hook = getattr(self.provider, "batch_api", None)
            api = hook() if hook is not None else None
            if api is None:
                text = f"{option('mode', 'batch')} needs a provider with a batch API; {self.provider.name!r} has none"
                raise BatchStop(text, Fatal(text, error_type="config_error"))
            self._api = api
        return self._api

    def image_done(self, job_id: int, status: str, error_type: str | None) -> None:
        """A job settled without a paid answer this time (refused before sending, or its file changed)."""
        if self.on_image is not None:
            self.on_image(job_id, status, self.paid.pop(job_id, 0.0), error_type)


def stop_if_fatal(err: ProviderError) -> None:
    if isinstance(err, Fatal):
        raise BatchStop(err.message, err)


def no_batch_api(api: BatchAPI, err: ProviderError) -> BatchStop | None:
    """A 404 on the batch routes themselves (listing or creating: not one batch) means the server has no batch API
    at all, a gateway in front of the real one, say. One sentence instead of "not found (404)"."""
    if not isinstance(err, Fatal) or err.http_status != 404:
        return None
    text = f"this server has no {getattr(api, 'api_name', 'batch API')}; run without {option('mode', 'batch')}"
    return BatchStop(text, Fatal(text, http_status=404, request_id=err.request_id, error_type="not_found_error"))
