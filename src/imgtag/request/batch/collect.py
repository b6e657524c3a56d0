"""Polling batches and streaming their results into the store, one result at a time (any BatchAPI).

A result line is stored in one transaction keyed on its custom_id's state, so a collection interrupted
at any point (kill -9, dropped connection) is simply run again: settled items are skipped, the rest
are stored, and only then is the batch marked collected.
"""

from __future__ import annotations

import time
from collections import Counter

from imgtag.pricing.costs import cost_usd
from imgtag.providers.base import Fatal, ModelAnswer, ProviderError, Unreachable
from imgtag.providers.batch_api import CANCELED, ERRORED, EXPIRED, SUCCEEDED, BatchHandle, ItemResult, counted
from imgtag.request.batch.common import BatchContext, BatchStop, ImageSettled, stop_if_fatal
from imgtag.request.packing import split_answer
from imgtag.store import batches as sb
from imgtag.store.db import now_iso
from imgtag.util.words import plural
from imgtag.validate.verdict import INVALID, OK, TRUNCATED, judge, kept_text

# How many batches may return a job errored/expired before it is recorded as failed. Those results are not
# billed, so another try costs only time; 5 keeps a 10% fault rate from ever failing an image (1e-5 each).
MAX_BATCH_ATTEMPTS = 5
# A server that refuses every poll's connection (nothing listens: it is gone, or restarting) is given up on once it
# has done so for UNREACHABLE_S, over at least UNREACHABLE_SWEEPS sweeps in a row. A restart (a gateway, a vLLM
# server, a failover, a laptop changing networks) takes tens of seconds, so two minutes survives several of them;
# with the poll backoff (5 s growing 1.5x) a re-attach to a server that is gone stops about 2.7 minutes in, not the
# ~15 minutes MAX_FAILED_SWEEPS (request/batch/runner.py) leaves a server that is there but times out or errors.
UNREACHABLE_S = 120.0
UNREACHABLE_SWEEPS = 3


class Collector:
    def __init__(self, ctx: BatchContext, *, max_batch_attempts: int = MAX_BATCH_ATTEMPTS) -> None:
        self.ctx = ctx
        self.max_batch_attempts = max_batch_attempts
        self.failed_sweeps = 0
        self.refused_sweeps = 0  # sweeps in a row whose every poll found nothing listening
        self.refused_since: float | None = None  # monotonic time of the first of them
        self._refused = False  # the last poll's connection was refused

    async def poll(self, batch_id: str) -> BatchHandle | None:
        """Retrieve one batch and keep its row current. None on a transient error (polled again later)."""
        ctx = self.ctx
        try:
            batch = await ctx.api.retrieve(batch_id)
        except ProviderError as err:
            self._refused = isinstance(err, Unreachable)
            if err.http_status == 404:
                text = (f"batch {batch_id} is unknown to the API (404): check the provider's base URL and the "
                        "account or workspace, or give it up with `imgtag cancel`")
                raise BatchStop(text, Fatal(text, http_status=404, error_type="not_found_error")) from None
            stop_if_fatal(err)
            return None
        batch = counted(batch, sb.batch_requests(ctx.store, batch.id))
        sb.update_batch(ctx.store, batch)
        ctx.stats.live[batch.id] = (batch.processing_status, dict(batch.counts))
        return batch

    async def sweep(self, batch_ids: list[str]) -> int:
        """Poll each batch once; collect those that ended. Returns how many were collected.

        A sweep in which every call failed counts toward `failed_sweeps` (the caller's give-up signal);
        one that reached the API resets it."""
        collected = 0
        reached = not batch_ids
        refused = bool(batch_ids)
        for batch_id in batch_ids:
            batch = await self.poll(batch_id)
            if batch is None:
                refused = refused and self._refused
                continue
            refused = False
            if not batch.ended:
                reached = True
            elif await self.collect(batch_id, batch) is not None:
                reached = True
                collected += 1
        self.failed_sweeps = 0 if reached else self.failed_sweeps + 1
        if not refused:
            self.refused_sweeps, self.refused_since = 0, None
        else:
            self.refused_sweeps += 1
            self.refused_since = self.refused_since if self.refused_since is not None else time.monotonic()
        return collected

    def unreachable(self) -> bool:
        """The server has refused every connection long enough to be called gone (UNREACHABLE_S)."""
        return (self.refused_sweeps >= UNREACHABLE_SWEEPS and self.refused_since is not None
                and time.monotonic() - self.refused_since >= UNREACHABLE_S)

    async def collect(self, batch_id: str, batch: BatchHandle | None = None) -> Counter[str] | None:
        """Stream an ended batch's results into the store. Returns what became of the jobs (ok, failed,
        pending, missing), or None when the stream broke off (the batch stays uncollected and is collected
        again later). `batch` (as last polled) says what became of requests its results do not list."""
        ctx = self.ctx
        tally: Counter[str] = Counter()
        try:
            async for result in ctx.api.results(batch_id):
                # One result at a time: never the whole batch in memory.
                tally.update(self._store_result(batch_id, result))
        except ProviderError as err:
            stop_if_fatal(err)
            return None
        if batch is not None and batch.unlisted is not None:
            # An API that lists only what it processed (OpenAI: a canceled, expired or failed batch): the rest
            # are settled as such, so they count toward the resubmission cap like listed ones.
            for cid in sb.unanswered_requests(ctx.store, batch_id):
                unlisted = ItemResult(cid, batch.unlisted, error_type="batch_failed", error_message=batch.error)
                tally.update(self._store_result(batch_id, unlisted))
        missing = sb.finish_collection(ctx.store, batch_id)
        if missing:
            tally["missing"] += missing
            ctx.stats.requeued += missing
        ctx.stats.live.pop(batch_id, None)
        ctx.events.emit("batch_ended", batch_id=batch_id,
                        processing_status=batch.processing_status if batch is not None else "ended",
                        ok=tally["ok"], failed=tally["failed"], requeued=tally["pending"] + tally["missing"])
        return tally

    # -- one result ----------------------------------------------------------------------------

    def _store_result(self, batch_id: str, result: ItemResult) -> list[str]:
        """Store one result line: one image's, or a pack's (each image gets its own labelled answer). Returns
        what became of each job stored now."""
        ctx = self.ctx
        rows = sb.request_items(ctx.store, result.custom_id)
        if not rows or rows[0]["batch_id"] != batch_id:
            return []  # not ours
        started = now_iso()
        jobs = [int(r["job_id"]) for r in rows]
        outcomes = self._outcomes(jobs, result)
        states = []
        for row, outcome in zip(rows, outcomes, strict=True):
            if row["state"] != sb.SUBMITTED:
                continue  # settled by an earlier, interrupted collection
            if not sb.settle_item(ctx.store, row["custom_id"], batch_id, ctx.run_id, outcome, started):
                continue
            st = ctx.stats
            st.spent_usd += outcome.cost or 0.0
            if ctx.on_image is not None:
                self._image_settled(ctx.on_image, int(row["job_id"]), outcome)
            if outcome.job_status == "ok":
                st.ok += 1
            elif outcome.job_status == "failed":
                st.failed += 1
            elif outcome.job_status == "pending":
                st.requeued += 1
            states.append(outcome.job_status or "superseded")
        return states

    def _image_settled(self, on_image: ImageSettled, job_id: int, outcome: sb.ItemOutcome) -> None:
        """Add this result's cost to the job's; tell the run when the job reached ok or failed."""
        ctx = self.ctx
        paid = ctx.paid.get(job_id, 0.0)
        paid = None if paid is None or (outcome.cost is None and outcome.usage is not None) else paid + (
            outcome.cost or 0.0)
        if outcome.job_status in ("ok", "failed"):
            ctx.paid.pop(job_id, None)
            on_image(job_id, outcome.job_status, paid, outcome.error_type if outcome.job_status == "failed"
                         else None)
        else:
            ctx.paid[job_id] = paid

    def _outcomes(self, job_ids: list[int], result: ItemResult) -> list[sb.ItemOutcome]:
        """One outcome per image of the request."""
        if len(job_ids) == 1:
            return [self._outcome(job_ids[0], result)]
        if result.kind == SUCCEEDED and result.answer is not None:
            answers = split_answer(result.answer, len(job_ids))
            return [self._answered(answer, job_id) for answer, job_id in zip(answers, job_ids, strict=True)]
        if result.kind == ERRORED and result.permanent:
            # One bad image makes the whole request invalid (not billed): each image goes alone next time, so
            # the bad one fails on its own and the others are answered.
            error_type = result.error_type or "api_error"
            message = f"{error_type}: {result.error_message or error_type} (a pack of images; each is sent alone next)"
            return [sb.ItemOutcome(sb.SPLIT, "retry", "pending", error_type=error_type, error_message=message)
                    for _ in job_ids]
        return [self._outcome(job_id, result) for job_id in job_ids]

    def _outcome(self, job_id: int, result: ItemResult) -> sb.ItemOutcome:
        kind = result.kind
        if kind == SUCCEEDED and result.answer is not None:
            return self._answered(result.answer, job_id)
        if kind == CANCELED:
            return sb.ItemOutcome("canceled", "canceled", "pending", error_type="canceled",
                                  error_message="the batch was canceled before this request was processed")
        if kind == ERRORED:
            error_type = result.error_type or "api_error"
            message = f"{error_type}: {result.error_message or error_type}"
            if result.permanent:
                return sb.ItemOutcome("failed", "failed", "failed", error_type=error_type, error_message=message)
            return self._transient(job_id, "errored", error_type, message)
        # expired (or a result kind this version does not know): not billed, try again in a new batch.
        return self._transient(job_id, "expired", "expired" if kind == EXPIRED else str(kind),
                               "the batch expired before this request was processed")

    def _transient(self, job_id: int, state: str, error_type: str, message: str) -> sb.ItemOutcome:
        failures = sb.batch_failures(self.ctx.store, job_id) + 1
        if failures >= self.max_batch_attempts:
            return sb.ItemOutcome(state, "failed", "failed", error_type=error_type,
                                  error_message=f"{message} (in {plural(failures, 'batch')}; gave up)")
        return sb.ItemOutcome(state, "retry", "pending", error_type=error_type, error_message=message)

    def _answered(self, answer: ModelAnswer, job_id: int | None = None) -> sb.ItemOutcome:
        t = self.ctx.target
        # Batch prices: every token class at half the standard rate.
        # None without prices: recorded as paid at an unknown price, never as $0.
        cost = cost_usd(t.model.prices, answer.usage, batch=True, request_prompt=answer.request_prompt_tokens)
        verdict = judge(answer, t.preset.schema)
        rid = answer.request_id
        if verdict.kind == OK:
            return sb.ItemOutcome("ok", "ok", "ok", fields=verdict.fields, usage=answer.usage, cost=cost,
                                  request_id=rid)
        kept = kept_text(answer)  # paid for: its text stays in the store
        if verdict.kind in (TRUNCATED, INVALID) and job_id is not None and \
                sb.answers_rejected(self.ctx.store, job_id, verdict.kind) == 0:
            # As in sync mode: one more ask (a truncated one with twice max_tokens, see BatchRunner._entry).
            return sb.ItemOutcome("failed", "retry", "pending", error_type=verdict.kind,
                                  error_message=verdict.message or verdict.kind, usage=answer.usage, cost=cost,
                                  request_id=rid, raw_answer=kept)
        return sb.ItemOutcome("failed", "failed", "failed", error_type=verdict.kind,
                              error_message=verdict.message or verdict.kind, usage=answer.usage, cost=cost,
                              request_id=rid, raw_answer=kept)
