"""Batch mode: a provider's batch API (providers/batch_api.py) at its batch price, re-attached after any crash.

One `imgtag run --mode batch`:
1. reconcile submissions a crash left without a batch id (batch_submit.Submitter.reconcile);
2. poll every live batch of this target once and collect those that ended while we were away;
3. stream the pending work into chunks and create one batch per chunk (items already in a live batch are
   never offered: the runner skips jobs whose status is 'batched');
4. with --detach, return; else poll with backoff, collect each batch as it ends, and resubmit what came back
   errored/expired (re-reading the image from disk) in new batches until nothing is pending or the caps hit.
`cancel_batches` is `imgtag cancel`.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from imgtag.config.options import option
from imgtag.events import Events
from imgtag.ingest.preprocess import ImageReport, PrepareRequest, prepare
from imgtag.pricing.costs import cost_usd
from imgtag.pricing.estimate import RequestEstimate, estimate_request, pack_estimate, reserve_tokens
from imgtag.providers.base import Fatal, ImageInput, RequestOptions, max_edge_of
from imgtag.providers.batch_api import BatchAPI
from imgtag.request.batch.cancel import Say, ServerFor, cancel_all
from imgtag.request.batch.collect import Collector
from imgtag.request.batch.common import MAX_POLL_INTERVAL_S, POLL_BACKOFF, BatchContext, BatchStop, ImageSettled
from imgtag.request.batch.limits import BatchLimits, byte_budget, lowered_note
from imgtag.request.batch.submit import Entry, Submitter, chunked_within
from imgtag.request.engine import MAX_TOKENS_CEILING, WorkItem
from imgtag.request.packing import packed_params
from imgtag.request.template import prepare_template
from imgtag.store import Store
from imgtag.store import batches as sb
from imgtag.util.money import usd
from imgtag.util.words import plural
from imgtag.validate.verdict import TRUNCATED

# Polls in a row that reach nothing before a run gives up (with backoff, ~15 min; batches stay live and
# a rerun re-attaches).
MAX_FAILED_SWEEPS = 20
# Images re-read at once for a resubmission round (bounded: each holds an encoded image).
REPREPARE_WINDOW = 8


class BatchRunner:
    def __init__(self, store: Store, provider: Any, target: Any, cfg: Any, run_id: int | None,
                 progress: Any = None, *, events: Events | None = None,
                 on_image: ImageSettled | None = None) -> None:
        self.ctx = BatchContext(store, provider, target, cfg, run_id, events=events or Events(None), on_image=on_image)
        self.stats = self.ctx.stats
        # The run's chunk limits: set from the API and the flags once the provider is checked, lowered when a
        # create is refused for its size (shared by the chunker and the submitter).
        self.limits = BatchLimits(max(1, int(cfg.batch_max_requests)), byte_budget(int(cfg.batch_max_bytes)), 0)
        self.submitter = Submitter(self.ctx, self.limits)
        self.collector = Collector(self.ctx)
        self.progress = progress
        self.max_bytes = self.limits.max_bytes
        self.fatal: Fatal | None = None
        self.message: str | None = None
        self.detached = False
        self.budget_hit = False
        self._pool: ThreadPoolExecutor | None = None

    def describe(self) -> str:
        """For the progress line: batches by state and their request counts."""
        return self.stats.describe()

    async def run(self, items: AsyncIterator[WorkItem]) -> None:
        try:
            self._check_provider()
            await self.submitter.reconcile()
            await self.collector.sweep(self._live_ids())
            await self._submit(self._from_stream(items))
            if self.ctx.cfg.detach:
                await self._submit(self._resubmissions())
                self._detach()
            else:
                await self._settle()
        except BatchStop as stop:
            self.fatal = stop.fatal
            self.message = stop.message
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
        if self.budget_hit and self.message is None:
            left, held = self.stats.budget_skipped, self.stats.reserved_usd
            submitted = f"{usd(held)} reserved for the requests submitted" if held else "nothing submitted"
            self.message = (f"budget of {usd(self.ctx.cfg.budget)} reached ({submitted}): {plural(left, 'image')} "
                            f"{'was' if left == 1 else 'were'} not submitted (run again to submit them: "
                            f"{option('budget')} caps each run)")
        if self.message is None:
            self.message = lowered_note(self.submitter.lowered, self.limits)

    # -- phases --------------------------------------------------------------------------------

    def _check_provider(self) -> None:
        """The provider's batch API (BatchStop, exit 2, without one) and its limits under the user's."""
        api: BatchAPI = self.ctx.api
        self.limits.max_requests = max(1, min(int(self.ctx.cfg.batch_max_requests), api.max_requests))
        self.limits.max_bytes = self.max_bytes = byte_budget(min(int(self.ctx.cfg.batch_max_bytes), api.max_bytes))
        self.limits.envelope_bytes = api.envelope_bytes

    def _live_ids(self) -> list[str]:
        rows = sb.live_batches(self.ctx.store, self.ctx.target.key)
        for row in rows:
            self.stats.live.setdefault(row.id, (row.processing_status, row.request_counts or {}))
            if row.id not in self.stats.images_per_request:  # re-attached or adopted: the store knows its packs
                self.stats.images_per_request[row.id] = sb.images_per_request(self.ctx.store, row.id)
        return [row.id for row in rows]

    async def _submit(self, entries: AsyncIterator[Entry]) -> int:
        submitted = 0
        async for chunk in chunked_within(entries, self.limits):
            await self.submitter.submit(chunk)
            submitted += len(chunk.entries)
        return submitted

    async def _settle(self) -> None:
        """Poll with backoff until every batch is collected and nothing is left to resubmit."""
        interval = self.ctx.cfg.poll_interval
        while True:
            if await self._submit(self._resubmissions()):
                interval = self.ctx.cfg.poll_interval  # a young batch: look again soon
            live = self._live_ids()
            if not live:
                return
            await asyncio.sleep(interval)
            interval = min(MAX_POLL_INTERVAL_S, interval * POLL_BACKOFF)
            await self.collector.sweep(live)
            if self.collector.unreachable():
                text = self._gone_sentence(len(live))
                raise BatchStop(text, Fatal(text, error_type="connection_error"))
            if self.collector.failed_sweeps >= MAX_FAILED_SWEEPS:
                raise BatchStop(f"lost contact with the batch API ({self.collector.failed_sweeps} failed polls in "
                                "a row); the batches keep running: run the same command again to collect them")

    def _gone_sentence(self, live: int) -> str:
        """Nothing listens where the batches are: say so and stop (exit 2); they stay in the store, still live on
        the server as far as anyone knows, and the same command re-attaches once it answers."""
        reach = getattr(self.ctx.provider, "reach", None)
        where = getattr(reach, "where", None) or "the provider's batch API"
        kept = "the batch is kept: run the same command again to re-attach it" if live == 1 else (
            f"the {live} batches are kept: run the same command again to re-attach them")
        return f"the server at {where} does not answer; {kept}"

    def _detach(self) -> None:
        live = self._live_ids()
        if not live:
            return  # nothing in flight: the run's exit code says how it went
        self.detached = True
        shown = ", ".join(live[:5]) + (f" and {len(live) - 5} more" if len(live) > 5 else "")
        them, their = ("it", "its") if len(live) == 1 else ("them", "their")
        self.message = (f"{plural(len(live), 'batch')} in flight ({shown}); `imgtag status` shows {them}, and "
                        f"running the same command again collects {their} results")

    # -- entries -------------------------------------------------------------------------------

    async def _from_stream(self, items: AsyncIterator[WorkItem]) -> AsyncIterator[Entry]:
        async def members() -> AsyncIterator[_Member]:
            async for item in items:
                yield _Member(item.job_id, item.image, item.estimate)

        async for entry in self._entries(members()):
            yield entry

    @property
    def per_request(self) -> int:
        """--images-per-request, where the batch API can carry labelled packs (else one image per request)."""
        k = self.ctx.cfg.images_per_request
        return k if k > 1 and self.ctx.api.packs_images else 1

    async def _entries(self, members: AsyncIterator[_Member]) -> AsyncIterator[Entry]:
        """Requests of up to K images in arrival order; an image whose pack was refused before goes alone."""
        k = self.per_request
        pack: list[_Member] = []
        async for member in members:
            if k > 1 and not member.alone:
                pack.append(member)
                if len(pack) < k:
                    continue
                group, pack = pack, []
            else:
                group = [member]
            for entry in self._entry(group):
                yield entry
        if pack:
            for entry in self._entry(pack):
                yield entry

    def _reserve_usd(self, members: list[_Member]) -> float:
        """Never less than the request can cost: the larger of each image as its own uncached request and the pack
        as the one request it is, whose prompt alone decides its long-context band (pricing/costs.py)."""
        t = self.ctx.target
        alone = sum(cost_usd(t.model.prices, m.estimate.usage(), batch=True) or 0.0 for m in members)
        if len(members) == 1:
            return alone
        pack = pack_estimate([m.estimate for m in members], t.preset, t.model)
        return max(alone, cost_usd(t.model.prices, pack.usage(), batch=True) or 0.0)

    def _entry(self, members: list[_Member]) -> list[Entry]:
        """The batch request for these images (one, or a labelled pack), within the budget and the byte cap."""
        ctx = self.ctx
        t = ctx.target
        if self.budget_hit:
            self.stats.budget_skipped += len(members)
            return []
        est = self._reserve_usd(members)
        if ctx.cfg.budget is not None and self.stats.reserved_usd + est > ctx.cfg.budget:
            self.budget_hit = True
            self.stats.budget_skipped += len(members)
            return []
        options = [RequestOptions(t.preset, t.model, self._max_tokens(m.job_id), batch=True) for m in members]
        if len(members) == 1:
            params = ctx.api.build_params(members[0].image, options[0])
        else:
            params = packed_params(ctx.api.build_params, [m.image for m in members], options)
        size = ctx.api.request_bytes(params)
        # Against the flags' and API's byte limit, not a lowered one: a gateway judges a lone request itself.
        if size + self.limits.envelope_bytes > self.max_bytes:
            if len(members) > 1:
                return [e for m in members for e in self._entry([m])]  # too big together: each alone
            sb.fail_job(ctx.store, members[0].job_id, ctx.run_id, "request_too_large",
                        f"the request is {size / 1e6:.1f} MB, over the {self.max_bytes / 1e6:.1f} MB batch "
                        "limit")
            self.stats.failed += 1
            ctx.image_done(members[0].job_id, "failed", "request_too_large")
            return []
        self.stats.reserved_usd += est
        return [Entry([m.job_id for m in members], params, size, est)]

    def _max_tokens(self, job_id: int) -> int:
        max_tokens = self.ctx.target.preset.max_output_tokens
        if sb.answers_rejected(self.ctx.store, job_id, TRUNCATED):
            max_tokens = min(MAX_TOKENS_CEILING, max_tokens * 2)  # it was cut off once: room to finish
        return max_tokens

    async def _resubmissions(self) -> AsyncIterator[Entry]:
        """Pending jobs that were in a batch before, with their image read again from disk (the image bytes
        are not kept anywhere between runs), packed again as new work is."""
        async for entry in self._entries(self._reread()):
            yield entry

    async def _reread(self) -> AsyncIterator[_Member]:
        """The resubmittable jobs, paged from the store; a few images prepared at a time."""
        if self.budget_hit:
            return
        ctx = self.ctx
        # Sized as the first submission was (and as sync mode sizes it): the provider's own edge limit too.
        template = replace(prepare_template(ctx.cfg, ctx.target, encode=True,
                                            provider_max_edge=max_edge_of(ctx.provider)), want_hashes=False)
        loop = asyncio.get_running_loop()
        window: deque[tuple[sb.PendingJob, asyncio.Future[ImageReport | None]]] = deque()
        after = 0
        while True:
            page = sb.resubmittable_jobs(ctx.store, ctx.target.key, after)
            if not page or self.budget_hit:
                break
            for job in page:
                if self.budget_hit:
                    break  # re-reading images nobody will pay to send is wasted work
                after = job.id
                paths = list(sb.files_with_sha(ctx.store, job.sha256, job.file_id))
                fut = loop.run_in_executor(self._executor(), _reprepare, template, paths, job.sha256)
                window.append((job, fut))
                if len(window) >= REPREPARE_WINDOW:
                    member = await self._prepared(*window.popleft())
                    if member is not None:
                        yield member
        while window:
            member = await self._prepared(*window.popleft())
            if member is not None:
                yield member

    async def _prepared(self, job: sb.PendingJob, fut: asyncio.Future[ImageReport | None]) -> _Member | None:
        report = await fut
        ctx = self.ctx
        if report is None or report.encoded is None or report.media_type is None:
            sb.fail_job(ctx.store, job.id, ctx.run_id, "source_changed",
                        "the image file is gone or changed since it was first sent, so it cannot be "
                        "resubmitted")
            self.stats.failed += 1
            ctx.image_done(job.id, "failed", "source_changed")
            return None
        t = ctx.target
        tokens = reserve_tokens(report.visual_tokens or 0, report.out_width, report.out_height, t.model)
        return _Member(job.id, ImageInput(report.encoded, report.media_type),
                       estimate_request(tokens, t.preset, t.model),
                       alone=sb.must_go_alone(ctx.store, job.id))

    def _executor(self) -> ThreadPoolExecutor:
        # Threads, not processes: these files decoded fine before, and Pillow releases the GIL while decoding.
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1),
                                            thread_name_prefix="imgtag-reprepare")
        return self._pool


@dataclass
class _Member:
    """One image on its way into a batch request."""

    job_id: int
    image: ImageInput
    estimate: RequestEstimate
    alone: bool = False  # its pack was refused as a whole before: sent one image per request


def _reprepare(template: PrepareRequest, paths: list[str], sha256: str) -> ImageReport | None:
    """The first file that still holds exactly this content, prepared for sending."""
    for path in paths:
        report = prepare(replace(template, path=path))
        if report.ok and report.sha256 == sha256 and report.encoded is not None:
            return report
    return None


def cancel_batches(out: Path, *, wait_s: float = 120.0, server: ServerFor | None = None,
                   say: Say | None = None) -> int:
    """`imgtag cancel`: cancel every live batch, wait (bounded) for each to end, store what was answered
    (it is paid for), and return the rest to pending. One line per batch; exit code. `server(target record)`:
    the provider settings (base_url) that reach the batches' server."""
    return cancel_all(out, wait_s=wait_s, server=server, say=say)
