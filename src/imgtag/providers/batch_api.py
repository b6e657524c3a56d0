"""What batch mode needs from a provider's batch API, whatever the wire: the `BatchAPI` protocol.

`request/batch/` (chunk, submit with the submission committed first, poll, collect, resubmit, cancel,
reconcile) talks only to this interface. A provider with a batch API returns an implementation from
`Provider.batch_api()`; `providers/anthropic_batches.py` is the Message Batches one and
`providers/openai_batches.py` the OpenAI Batch API one (a JSONL file uploaded in `create`, its states and
counts mapped onto the names below).

Every method raises only the provider error kinds of `providers.base` (RateLimited, Transient, Permanent,
Fatal), never an SDK exception, so the batch flow classifies nothing itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from imgtag.config.options import option
from imgtag.providers.messages import ImageInput, ModelAnswer, RequestOptions

# Batch processing states, as batch mode understands them (an implementation maps its own onto these).
IN_PROGRESS, CANCELING, ENDED = "in_progress", "canceling", "ended"
# Request counts of a batch, by outcome (all but `processing` may stay 0 until the batch has ended).
COUNT_NAMES = ("processing", "succeeded", "errored", "canceled", "expired")
# Result kinds of one request.
SUCCEEDED, ERRORED, CANCELED, EXPIRED = "succeeded", "errored", "canceled", "expired"


@dataclass(frozen=True)
class BatchHandle:
    """A batch as the API reports it. `created_at`/`ended_at` are timezone-aware."""

    id: str
    processing_status: str                  # IN_PROGRESS, CANCELING or ENDED
    created_at: datetime
    ended_at: datetime | None = None
    counts: dict[str, int] = field(default_factory=dict)  # COUNT_NAMES -> number of requests
    # The label `create` attached (an API that keeps metadata on a batch), so a crash between create and commit
    # is reconciled by label rather than by request count; None where the API keeps none.
    label: str | None = None
    # What became of the requests an ended batch's results do not list: CANCELED, EXPIRED, or ERRORED with
    # `error` (a batch the API failed as a whole). None: the results list every request (else: missing).
    unlisted: str | None = None
    error: str | None = None

    @property
    def ended(self) -> bool:
        return self.processing_status == ENDED

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class BatchRequest:
    custom_id: str                          # ^[a-zA-Z0-9_-]{1,64}$, unique forever (store/batches.custom_id)
    params: dict[str, Any]                  # what `BatchAPI.build_params` returned


@dataclass(frozen=True)
class ItemResult:
    """One request's result. SUCCEEDED carries the answer (its `request_id` set when the API gives one);
    ERRORED carries the error and whether a new batch could fix it (`permanent` False: resubmit)."""

    custom_id: str
    kind: str                               # SUCCEEDED, ERRORED, CANCELED, EXPIRED (or an unknown kind)
    answer: ModelAnswer | None = None
    error_type: str | None = None
    error_message: str | None = None
    permanent: bool = False


class BatchAPI(Protocol):
    """A provider's batch API. Limits are the API's own; the user's flags can only lower them."""

    max_requests: int                       # requests per batch
    max_bytes: int                          # bytes per create body
    envelope_bytes: int                     # body bytes outside the requests (each request adds its size + 1)
    packs_images: bool                      # a request may carry several labelled images (--images-per-request)
    labels_batches: bool                    # `create` attaches `label` and listed batches carry it back

    def unavailable(self) -> str | None:
        """Before anything is created or stored: one sentence when this server has no such batch API (a
        compatible server or gateway answering 404), else None. Cheap (one small request), synchronous (it
        runs before the run's event loop), and None when it cannot tell (a timeout): the run then finds out."""
        ...

    def build_params(self, image: ImageInput, options: RequestOptions) -> dict[str, Any]:
        """One request's parameters, as the synchronous call would send them."""
        ...

    def request_bytes(self, params: dict[str, Any]) -> int:
        """Encoded size of one request inside the create body (with the largest custom_id)."""
        ...

    async def create(self, requests: Sequence[BatchRequest], *, timeout: float, label: str) -> BatchHandle:
        """Create one batch, labelled (where `labels_batches`) with `label`, unique to this submission and the
        same when a create is retried. A Permanent error means the API refused the batch as a whole."""
        ...

    async def retrieve(self, batch_id: str) -> BatchHandle:
        """The batch's current state. A batch the API does not know raises Fatal with http_status 404."""
        ...

    def results(self, batch_id: str) -> AsyncIterator[ItemResult]:
        """An ended batch's results, streamed one at a time (never the whole batch in memory)."""
        ...

    async def cancel(self, batch_id: str) -> None:
        """Ask the API to cancel the batch (it ends later, with what was already answered)."""
        ...

    def list_recent(self) -> AsyncIterator[BatchHandle]:
        """The account's batches, newest first (reconcile stops reading once they are older than it needs)."""
        ...


def counted(batch: BatchHandle, requests: int) -> BatchHandle:
    """The batch with its `requests` counted as processing while the API counts none yet (OpenAI reports 0
    requests while it validates a batch), so progress and `status` show what is on the server."""
    if batch.ended or batch.total:
        return batch
    return replace(batch, counts={**batch.counts, "processing": requests})


def batch_unavailable(provider: Any) -> str | None:
    """Why `--mode batch` cannot run with this provider and server (one sentence), or None: checked before the
    store is opened, so a refused run creates nothing."""
    hook = getattr(provider, "batch_api", None)
    api = hook() if hook is not None else None
    if api is None:
        return f"{option('mode', 'batch')} needs a provider with a batch API; {provider.name!r} has none"
    probe = getattr(api, "unavailable", None)  # optional for BatchAPI implementations written before it
    return probe() if probe is not None else None
