"""Chunking requests into Message Batches and creating them without ever paying for an item twice.

Order of events for one batch (see store/batches.py):
  commit submission + items  ->  batches.create  ->  commit batch id + jobs 'batched'
A crash in the middle leaves a submission without a batch id; `reconcile` lists the account's batches
created since then and adopts the one with the same number of requests, or, if there is none, knows the
create never happened and returns the items to pending.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anthropic

from imgtag.providers.base import Fatal, Permanent, ProviderError
from imgtag.request.batch.common import BatchContext, BatchStop, stop_if_fatal
from imgtag.store import batches as sb

# The byte limit is checked against the measured JSON body; 5% headroom covers what we cannot see
# (a gateway's re-encoding, multipart framing, future envelope fields).
HEADROOM = 0.95
ENVELOPE_BYTES = len('{"requests":[]}')
# Each request is measured as `{"custom_id":"<id>","params":<params>}` with the id at its 64-char maximum:
# the id is only assigned when the chunk is committed, and 64 bytes are noise next to an image.
REQUEST_FRAME_BYTES = len('{"custom_id":"","params":}') + 64
# Clocks differ; a batch created "before" its submission by less than this can still be ours.
CLOCK_SLACK = timedelta(minutes=10)
MAX_CREATE_ATTEMPTS = 5
CREATE_BACKOFF_S = 2.0  # first wait after a failed create; doubles, capped at 30 s
CREATE_TIMEOUT_S = 600.0  # uploading up to 256 MB takes a while on a slow uplink


def request_bytes(params: dict[str, Any]) -> int:
    """Encoded size exactly as the SDK serialises it (compact separators, UTF-8, no ASCII escaping)."""
    return len(json.dumps(params, ensure_ascii=False, separators=(",", ":")).encode()) + REQUEST_FRAME_BYTES


def byte_budget(max_bytes: int) -> int:
    return int(max_bytes * HEADROOM)


@dataclass
class Entry:
    job_id: int
    params: dict[str, Any]
    size: int
    estimate_usd: float = 0.0


@dataclass
class Chunk:
    """Requests for one batch: at most `max_requests`, body at most `max_bytes` (already with headroom)."""

    max_requests: int
    max_bytes: int
    entries: list[Entry] = field(default_factory=list)
    nbytes: int = ENVELOPE_BYTES

    def fits(self, entry: Entry) -> bool:
        comma = 1 if self.entries else 0
        return len(self.entries) < self.max_requests and self.nbytes + comma + entry.size <= self.max_bytes

    def add(self, entry: Entry) -> None:
        self.nbytes += (1 if self.entries else 0) + entry.size
        self.entries.append(entry)


async def chunked(entries: AsyncIterator[Entry], max_requests: int, max_bytes: int) -> AsyncIterator[Chunk]:
    """Group entries into chunks, yielding each as soon as the next entry would not fit (only one chunk is
    ever held). Entries that fit in no chunk at all must be filtered out by the caller."""
    chunk = Chunk(max_requests, max_bytes)
    async for entry in entries:
        if chunk.entries and not chunk.fits(entry):
            yield chunk
            chunk = Chunk(max_requests, max_bytes)
        chunk.add(entry)
    if chunk.entries:
        yield chunk


def _total(batch: Any) -> int:
    return sum(sb.counts_of(batch).values())


def _definitely_not_created(exc: BaseException) -> bool:
    """The server answered with a rejection, so no batch exists. Timeouts, dropped connections and 5xx
    (except 529 overloaded, a rejection at the door) are ambiguous: the batch may exist."""
    if isinstance(exc, anthropic.APIStatusError):
        return (exc.status_code < 500 and exc.status_code not in (408, 409)) or exc.status_code == 529
    return False


class Submitter:
    def __init__(self, ctx: BatchContext) -> None:
        self.ctx = ctx

    # -- create --------------------------------------------------------------------------------

    async def submit(self, chunk: Chunk) -> None:
        """Create one batch for the chunk. Raises BatchStop when nothing more should be submitted."""
        ctx = self.ctx
        store = ctx.store
        sub, cids = sb.begin_submission(store, [e.job_id for e in chunk.entries])
        requests = [{"custom_id": cid, "params": e.params} for cid, e in zip(cids, chunk.entries, strict=True)]
        failures = 0
        while True:
            try:
                batch = await ctx.client.messages.batches.create(
                    requests=requests, timeout=max(ctx.cfg.timeout, CREATE_TIMEOUT_S))  # type: ignore[arg-type]
            except anthropic.AnthropicError as exc:
                err = ctx.classify(exc)
                if isinstance(err, Fatal):
                    sb.abandon_submission(store, sub.id)
                    stop_if_fatal(err)
                if isinstance(err, Permanent):
                    sb.abandon_submission(store, sub.id)
                    await self._rejected(chunk, err)
                    return
                failures += 1
                ambiguous = not _definitely_not_created(exc)
                if failures >= MAX_CREATE_ATTEMPTS and not ambiguous:
                    sb.abandon_submission(store, sub.id)
                    raise BatchStop(_gave_up(failures, err)) from None
                backoff = min(30.0, CREATE_BACKOFF_S * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)
                await asyncio.sleep(getattr(err, "retry_after", None) or backoff)
                if ambiguous:
                    # The batch may exist: look before creating it again (a failed listing stops the run and
                    # leaves the submission for the next run's reconcile).
                    found = _pick(await self._candidates(_when(sub.created_at) - CLOCK_SLACK), sub)
                    if found is not None:
                        self._attach(sub, found, chunk)
                        return
                    if failures >= MAX_CREATE_ATTEMPTS:
                        raise BatchStop(_gave_up(failures, err)) from None  # reconciled by the next run
                continue
            self._attach(sub, batch, chunk)
            return

    def _attach(self, sub: sb.Submission, batch: Any, chunk: Chunk) -> None:
        ctx = self.ctx
        key = ctx.target.key
        sb.attach_batch(ctx.store, sub.id, batch, provider=key.provider, model=key.model, run_id=ctx.run_id,
                        nbytes=chunk.nbytes)
        ctx.stats.created += 1
        ctx.stats.submitted += len(chunk.entries)
        ctx.stats.reserved_usd += sum(e.estimate_usd for e in chunk.entries)
        ctx.stats.live[batch.id] = (batch.processing_status, sb.counts_of(batch))

    async def _rejected(self, chunk: Chunk, err: ProviderError) -> None:
        """The API refused the whole batch. Too large: split it (our measure was off, e.g. a gateway with a
        lower limit). Anything else: every item failed with the cause, recorded, never silent."""
        if err.http_status == 413 and len(chunk.entries) > 1:
            half = len(chunk.entries) // 2
            for part in (chunk.entries[:half], chunk.entries[half:]):
                sub_chunk = Chunk(chunk.max_requests, chunk.max_bytes)
                for entry in part:
                    sub_chunk.add(entry)
                await self.submit(sub_chunk)
            return
        for entry in chunk.entries:
            sb.fail_job(self.ctx.store, entry.job_id, self.ctx.run_id, err.error_type,
                        f"batch rejected: {err.message}")
            self.ctx.stats.failed += 1

    # -- reconcile -----------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Settle submissions a crash left without a batch id, before any item could be submitted again."""
        orphans = sb.orphan_submissions(self.ctx.store)
        if not orphans:
            return
        candidates = await self._candidates(min(_when(s.created_at) for s in orphans) - CLOCK_SLACK)
        for sub in orphans:
            match = _pick(candidates, sub)
            if match is None:
                sb.abandon_submission(self.ctx.store, sub.id)  # the create never happened
                continue
            candidates.remove(match)
            self._adopt(sub, match)

    async def _candidates(self, since: datetime) -> list[Any]:
        """Remote batches created since `since` that the store does not know, oldest first."""
        known = sb.known_batch_ids(self.ctx.store)
        found: list[Any] = []
        last: ProviderError | None = None
        for attempt in range(4):
            try:
                found = []
                async for batch in self.ctx.client.messages.batches.list(limit=100):
                    if batch.created_at < since:
                        break  # newest first: everything further is older
                    if batch.id not in known:
                        found.append(batch)
                found.reverse()
                return found
            except anthropic.AnthropicError as exc:
                last = self.ctx.classify(exc)
                stop_if_fatal(last)
                await asyncio.sleep(min(10.0, 0.5 * 2 ** attempt))
        # Without the list we cannot tell whether those items are already in a batch: stop rather than
        # risk paying twice.
        detail = last.message if last else "no answer"
        raise BatchStop(f"could not list batches to check an interrupted submission ({detail}); "
                        "run the same command again")

    def _adopt(self, sub: sb.Submission, batch: Any) -> None:
        ctx = self.ctx
        owner = sb.submission_model(ctx.store, sub.id)
        if owner is None:
            sb.abandon_submission(ctx.store, sub.id)
            return
        sb.attach_batch(ctx.store, sub.id, batch, provider=owner[0], model=owner[1], run_id=ctx.run_id,
                        nbytes=0)
        ctx.stats.adopted += 1
        ctx.stats.live[batch.id] = (batch.processing_status, sb.counts_of(batch))


def _gave_up(failures: int, err: ProviderError) -> str:
    return (f"could not create a batch after {failures} attempts ({err.message}); "
            "run the same command again to continue")


def _when(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def _pick(candidates: list[Any], sub: sb.Submission) -> Any | None:
    """The oldest unknown remote batch created at/after the submission with exactly its request count."""
    since = _when(sub.created_at) - CLOCK_SLACK
    for batch in candidates:
        if batch.created_at >= since and _total(batch) == sub.item_count:
            return batch
    return None
