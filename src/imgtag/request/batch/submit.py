"""Chunking requests into batches and creating them without ever paying for an item twice (any BatchAPI).

Order of events for one batch (see store/batches.py):
  commit submission + items  ->  BatchAPI.create  ->  commit batch id + jobs 'batched'
A crash in the middle leaves a submission without a batch id; `reconcile` lists the account's batches
created since then and adopts the one carrying the submission's label (an API that keeps metadata, like
OpenAI's), else the one with the same number of requests; if there is none, it knows the create never
happened and returns the items to pending.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from imgtag.providers.base import Fatal, Permanent, ProviderError
from imgtag.providers.batch_api import BatchHandle, BatchRequest, counted
from imgtag.request.batch.common import BatchContext, BatchStop, no_batch_api, stop_if_fatal
from imgtag.request.batch.limits import BYTES, BatchLimits, byte_budget, oversize
from imgtag.store import batches as sb

# Body bytes outside the requests when a caller does not give its API's own (BatchAPI.envelope_bytes):
# a JSON object holding one array, the shape of the create bodies we know.
ENVELOPE_BYTES = len('{"requests":[]}')
# Clocks differ; a batch created "before" its submission by less than this can still be ours.
CLOCK_SLACK = timedelta(minutes=10)
MAX_CREATE_ATTEMPTS = 5
CREATE_BACKOFF_S = 2.0  # first wait after a failed create; doubles, capped at 30 s
CREATE_TIMEOUT_S = 600.0  # uploading up to 256 MB takes a while on a slow uplink


@dataclass
class Entry:
    """One batch request: the jobs (images) it carries, in label order (one, or a pack of labelled images)."""

    job_ids: list[int]
    params: dict[str, Any]
    size: int
    estimate_usd: float = 0.0


@dataclass
class Chunk:
    """Requests for one batch: at most `max_requests`, body at most `max_bytes` (already with headroom)."""

    max_requests: int
    max_bytes: int
    envelope_bytes: int = ENVELOPE_BYTES
    entries: list[Entry] = field(default_factory=list)
    nbytes: int = -1

    def __post_init__(self) -> None:
        if self.nbytes < 0:
            self.nbytes = self.envelope_bytes

    def fits(self, entry: Entry) -> bool:
        comma = 1 if self.entries else 0
        return len(self.entries) < self.max_requests and self.nbytes + comma + entry.size <= self.max_bytes

    def add(self, entry: Entry) -> None:
        self.nbytes += (1 if self.entries else 0) + entry.size
        self.entries.append(entry)


async def chunked(entries: AsyncIterator[Entry], max_requests: int, max_bytes: int, *,
                  envelope_bytes: int = ENVELOPE_BYTES) -> AsyncIterator[Chunk]:
    """Group entries into chunks, yielding each as soon as the next entry would not fit (only one chunk is
    ever held). Entries that fit in no chunk at all must be filtered out by the caller."""
    async for chunk in chunked_within(entries, BatchLimits(max_requests, max_bytes, envelope_bytes)):
        yield chunk


async def chunked_within(entries: AsyncIterator[Entry], limits: BatchLimits) -> AsyncIterator[Chunk]:
    """As `chunked`, each new chunk sized by the limits as they are then (a refused create lowers them while
    this generator waits at its yield)."""
    chunk = _chunk(limits)
    async for entry in entries:
        if chunk.entries and not chunk.fits(entry):
            yield chunk
            chunk = _chunk(limits)
        chunk.add(entry)
    if chunk.entries:
        yield chunk


def split(entries: list[Entry], limits: BatchLimits) -> list[Chunk]:
    """Entries packed in order into chunks that fit the limits."""
    chunks = [_chunk(limits)]
    for entry in entries:
        if chunks[-1].entries and not chunks[-1].fits(entry):
            chunks.append(_chunk(limits))
        chunks[-1].add(entry)
    return chunks


def _chunk(limits: BatchLimits) -> Chunk:
    return Chunk(limits.max_requests, limits.max_bytes, limits.envelope_bytes)


def _definitely_not_created(err: ProviderError) -> bool:
    """The server answered with a rejection, so no batch exists. Timeouts, dropped connections and 5xx
    (except 529 overloaded, a rejection at the door) are ambiguous: the batch may exist."""
    status = err.http_status
    if status is None:
        return False
    return (status < 500 and status not in (408, 409)) or status == 529


class Submitter:
    def __init__(self, ctx: BatchContext, limits: BatchLimits | None = None) -> None:
        self.ctx = ctx
        self._limits = limits
        self.lowered: set[str] = set()  # which limits a refused create lowered in this run (REQUESTS, BYTES)

    @property
    def limits(self) -> BatchLimits:
        """The run's limits (shared with its chunker); the API's own when the caller gave none."""
        if self._limits is None:
            api = self.ctx.api
            self._limits = BatchLimits(api.max_requests, byte_budget(api.max_bytes), api.envelope_bytes)
        return self._limits

    # -- create --------------------------------------------------------------------------------

    async def submit(self, chunk: Chunk) -> None:
        """Create one batch for the chunk (several, if it was built before a smaller limit was learned).
        Raises BatchStop when nothing more should be submitted."""
        limits = self.limits
        if len(chunk.entries) > limits.max_requests or chunk.nbytes > limits.max_bytes:
            for part in split(chunk.entries, limits):
                await self._create(part)
            return
        await self._create(chunk)

    async def _create(self, chunk: Chunk) -> None:
        ctx = self.ctx
        store = ctx.store
        sub, cids = sb.begin_submission(store, [e.job_ids for e in chunk.entries])
        requests = [BatchRequest(cid, e.params) for cid, e in zip(cids, chunk.entries, strict=True)]
        label = sb.submission_label(store, sub.id)
        failures = 0
        while True:
            try:
                batch = await ctx.api.create(requests, timeout=max(ctx.cfg.timeout, CREATE_TIMEOUT_S), label=label)
            except ProviderError as err:
                if isinstance(err, Fatal):
                    sb.abandon_submission(store, sub.id)
                    if (stop := no_batch_api(ctx.api, err)) is not None:
                        raise stop from None
                    stop_if_fatal(err)
                if isinstance(err, Permanent):
                    sb.abandon_submission(store, sub.id)
                    await self._rejected(chunk, err)
                    return
                failures += 1
                ambiguous = not _definitely_not_created(err)
                if failures >= MAX_CREATE_ATTEMPTS and not ambiguous:
                    sb.abandon_submission(store, sub.id)
                    raise BatchStop(_gave_up(failures, err)) from None
                backoff = min(30.0, CREATE_BACKOFF_S * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)
                await asyncio.sleep(getattr(err, "retry_after", None) or backoff)
                if ambiguous:
                    # The batch may exist: look before creating it again (a failed listing stops the run and
                    # leaves the submission for the next run's reconcile).
                    found = self._pick(await self._candidates(_when(sub.created_at) - CLOCK_SLACK), sub)
                    if found is not None:
                        self._attach(sub, found, chunk)
                        return
                    if failures >= MAX_CREATE_ATTEMPTS:
                        raise BatchStop(_gave_up(failures, err)) from None  # reconciled by the next run
                continue
            self._attach(sub, batch, chunk)
            return

    def _attach(self, sub: sb.Submission, batch: BatchHandle, chunk: Chunk) -> None:
        ctx = self.ctx
        key = ctx.target.key
        batch = counted(batch, len(chunk.entries))
        sb.attach_batch(ctx.store, sub.id, batch, provider=key.provider, model=key.model, run_id=ctx.run_id,
                        nbytes=chunk.nbytes)
        ctx.stats.created += 1
        images = sum(len(e.job_ids) for e in chunk.entries)
        ctx.stats.submitted += images
        ctx.stats.images_per_request[batch.id] = images / len(chunk.entries)
        ctx.stats.live[batch.id] = (batch.processing_status, dict(batch.counts))
        ctx.events.emit("batch_submitted", batch_id=batch.id, requests=len(chunk.entries), images=images,
                        bytes=chunk.nbytes)

    async def _rejected(self, chunk: Chunk, err: ProviderError) -> None:
        """The API refused the whole batch; nothing in it was sent. About its size or request count (a gateway
        with lower caps than ours): halve it, lower the run's limit to the larger half, and try each half.
        One request alone over the byte cap: that image fails with the cause. Anything else: stop the run
        (exit 2), every image still pending, so fixing the cause and running again resumes it."""
        ctx = self.ctx
        kind = oversize(err)
        n = len(chunk.entries)
        if kind is not None and n > 1:
            halves = [chunk.entries[: n // 2], chunk.entries[n // 2:]]
            parts = [Chunk(chunk.max_requests, chunk.max_bytes, chunk.envelope_bytes) for _ in halves]
            for part, entries in zip(parts, halves, strict=True):
                for entry in entries:
                    part.add(entry)
            if self.limits.lower(kind, max(len(p.entries) for p in parts), max(p.nbytes for p in parts)):
                self.lowered.add(kind)
            for part in parts:
                await self.submit(part)
            return
        if kind == BYTES:
            (entry,) = chunk.entries
            if len(entry.job_ids) > 1:
                # A pack of images over the cap: each image goes alone from now on (pending again, never failed).
                sb.send_alone(ctx.store, entry.job_ids)
                return
            sb.fail_job(ctx.store, entry.job_ids[0], ctx.run_id, err.error_type,
                        f"batch rejected: this one request ({entry.size / 1e6:.1f} MB) is over the batch size "
                        f"the API accepts: {err.message}")
            ctx.stats.failed += 1
            ctx.image_done(entry.job_ids[0], "failed", err.error_type)
            return
        text = (f"the batch API refused a whole batch ({err.message}); nothing in it was sent or charged and its "
                "images stay pending: fix the cause and run the same command again")
        raise BatchStop(text, Fatal(text, http_status=err.http_status, request_id=err.request_id,
                                    error_type=err.error_type))

    # -- reconcile -----------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Settle submissions a crash left without a batch id, before any item could be submitted again."""
        orphans = sb.orphan_submissions(self.ctx.store)
        if not orphans:
            return
        candidates = await self._candidates(min(_when(s.created_at) for s in orphans) - CLOCK_SLACK)
        for sub in orphans:
            match = self._pick(candidates, sub)
            if match is None:
                sb.abandon_submission(self.ctx.store, sub.id)  # the create never happened
                continue
            candidates.remove(match)
            self._adopt(sub, match)

    async def _candidates(self, since: datetime) -> list[BatchHandle]:
        """Remote batches created since `since` that the store does not know, oldest first."""
        known = sb.known_batch_ids(self.ctx.store)
        found: list[BatchHandle] = []
        last: ProviderError | None = None
        for attempt in range(4):
            try:
                found = []
                async for batch in self.ctx.api.list_recent():
                    if batch.created_at < since:
                        break  # newest first: everything further is older
                    if batch.id not in known:
                        found.append(batch)
                found.reverse()
                return found
            except ProviderError as err:
                last = err
                stop_if_fatal(last)
                await asyncio.sleep(min(10.0, 0.5 * 2 ** attempt))
        # Without the list we cannot tell whether those items are already in a batch: stop rather than
        # risk paying twice.
        detail = last.message if last else "no answer"
        raise BatchStop(f"could not list batches to check an interrupted submission ({detail}); "
                        "run the same command again")

    def _pick(self, candidates: list[BatchHandle], sub: sb.Submission) -> BatchHandle | None:
        """The submission's batch among the unknown remote ones: by its label where the API keeps labels (a
        batch still validating may not report its requests yet), else by time and request count."""
        if self.ctx.api.labels_batches:
            label = sb.submission_label(self.ctx.store, sub.id)
            return next((batch for batch in candidates if batch.label == label), None)
        return _pick(candidates, sub)

    def _adopt(self, sub: sb.Submission, batch: BatchHandle) -> None:
        ctx = self.ctx
        owner = sb.submission_model(ctx.store, sub.id)
        if owner is None:
            sb.abandon_submission(ctx.store, sub.id)
            return
        batch = counted(batch, sub.item_count)
        sb.attach_batch(ctx.store, sub.id, batch, provider=owner[0], model=owner[1], run_id=ctx.run_id,
                        nbytes=0)
        ctx.stats.adopted += 1
        ctx.stats.live[batch.id] = (batch.processing_status, dict(batch.counts))


def _gave_up(failures: int, err: ProviderError) -> str:
    return (f"could not create a batch after {failures} attempts ({err.message}); "
            "run the same command again to continue")


def _when(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def _pick(candidates: list[BatchHandle], sub: sb.Submission) -> BatchHandle | None:
    """The oldest unknown remote batch created at/after the submission with exactly its request count."""
    since = _when(sub.created_at) - CLOCK_SLACK
    for batch in candidates:
        if batch.created_at >= since and batch.total == sub.item_count:
            return batch
    return None
