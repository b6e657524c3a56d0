"""Polling Message Batches and streaming their results into the store, one line at a time.

A result line is stored in one transaction keyed on its custom_id's state, so a collection interrupted
at any point (kill -9, dropped connection) is simply run again: settled items are skipped, the rest
are stored, and only then is the batch marked collected.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anthropic

from imgtag.pricing.costs import cost_usd
from imgtag.providers.anthropic_provider import answer_from_message
from imgtag.providers.base import Fatal
from imgtag.request.batch.common import BatchContext, BatchStop, stop_if_fatal
from imgtag.store import batches as sb
from imgtag.store.db import now_iso
from imgtag.validate.verdict import INVALID, OK, TRUNCATED, judge

# errored results that a new batch cannot fix: the request itself is bad (e.g. an image the API rejects).
PERMANENT_ERRORS = frozenset({"invalid_request_error", "request_too_large", "not_found_error",
                              "authentication_error", "permission_error", "billing_error"})
# How many batches may return a job errored/expired before it is recorded as failed. Those results are not
# billed, so another try costs only time; 5 keeps a 10% fault rate from ever failing an image (1e-5 each).
MAX_BATCH_ATTEMPTS = 5


class Collector:
    def __init__(self, ctx: BatchContext, *, max_batch_attempts: int = MAX_BATCH_ATTEMPTS) -> None:
        self.ctx = ctx
        self.max_batch_attempts = max_batch_attempts
        self.failed_sweeps = 0

    async def poll(self, batch_id: str) -> Any | None:
        """Retrieve one batch and keep its row current. None on a transient error (polled again later)."""
        ctx = self.ctx
        try:
            batch = await ctx.client.messages.batches.retrieve(batch_id)
        except anthropic.AnthropicError as exc:
            err = ctx.classify(exc)
            if err.http_status == 404:
                text = (f"batch {batch_id} is unknown to the API (404): check ANTHROPIC_BASE_URL and the "
                        "workspace, or give it up with `imgtag cancel`")
                raise BatchStop(text, Fatal(text, http_status=404, error_type="not_found_error")) from None
            stop_if_fatal(err)
            return None
        sb.update_batch(ctx.store, batch)
        ctx.stats.live[batch.id] = (batch.processing_status, sb.counts_of(batch))
        return batch

    async def sweep(self, batch_ids: list[str]) -> int:
        """Poll each batch once; collect those that ended. Returns how many were collected.

        A sweep in which every call failed counts toward `failed_sweeps` (the caller's give-up signal);
        one that reached the API resets it."""
        collected = 0
        reached = not batch_ids
        for batch_id in batch_ids:
            batch = await self.poll(batch_id)
            if batch is None:
                continue
            if batch.processing_status != "ended":
                reached = True
            elif await self.collect(batch_id) is not None:
                reached = True
                collected += 1
        self.failed_sweeps = 0 if reached else self.failed_sweeps + 1
        return collected

    async def collect(self, batch_id: str) -> Counter[str] | None:
        """Stream an ended batch's results into the store. Returns what became of the jobs (ok, failed,
        pending, missing), or None when
        the stream broke off (the batch stays uncollected and is collected again later)."""
        ctx = self.ctx
        tally: Counter[str] = Counter()
        try:
            results = await ctx.client.messages.batches.results(batch_id)
            async for line in results:
                # One line at a time: never the whole batch in memory.
                state = self._store_line(batch_id, line)
                if state is not None:
                    tally[state] += 1
        except anthropic.AnthropicError as exc:
            stop_if_fatal(ctx.classify(exc))
            return None
        missing = sb.finish_collection(ctx.store, batch_id)
        if missing:
            tally["missing"] += missing
            ctx.stats.requeued += missing
        ctx.stats.live.pop(batch_id, None)
        return tally

    # -- one result line -----------------------------------------------------------------------

    def _store_line(self, batch_id: str, line: Any) -> str | None:
        ctx = self.ctx
        row = sb.item(ctx.store, line.custom_id)
        if row is None or row["batch_id"] != batch_id or row["state"] != sb.SUBMITTED:
            return None  # not ours, or settled by an earlier, interrupted collection
        started = now_iso()
        outcome = self._outcome(int(row["job_id"]), line.result)
        if not sb.settle_item(ctx.store, line.custom_id, batch_id, ctx.run_id, outcome, started):
            return None
        st = ctx.stats
        st.spent_usd += outcome.cost
        if outcome.job_status == "ok":
            st.ok += 1
        elif outcome.job_status == "failed":
            st.failed += 1
        elif outcome.job_status == "pending":
            st.requeued += 1
        return outcome.job_status or "superseded"

    def _outcome(self, job_id: int, result: Any) -> sb.ItemOutcome:
        kind = result.type
        if kind == "succeeded":
            return self._answered(result.message, job_id)
        if kind == "canceled":
            return sb.ItemOutcome("canceled", "canceled", "pending", error_type="canceled",
                                  error_message="the batch was canceled before this request was processed")
        if kind == "errored":
            err = getattr(result.error, "error", None)
            error_type = str(getattr(err, "type", None) or "api_error")
            message = " ".join(str(getattr(err, "message", "") or error_type).split())[:300]
            if error_type in PERMANENT_ERRORS:
                return sb.ItemOutcome("failed", "failed", "failed", error_type=error_type,
                                      error_message=f"{error_type}: {message}")
            return self._transient(job_id, "errored", error_type, f"{error_type}: {message}")
        # expired (or a result type this version does not know): not billed, try again in a new batch.
        return self._transient(job_id, "expired", "expired" if kind == "expired" else str(kind),
                               "the batch expired (24 h) before this request was processed")

    def _transient(self, job_id: int, state: str, error_type: str, message: str) -> sb.ItemOutcome:
        failures = sb.batch_failures(self.ctx.store, job_id) + 1
        if failures >= self.max_batch_attempts:
            return sb.ItemOutcome(state, "failed", "failed", error_type=error_type,
                                  error_message=f"{message} (in {failures} batches; gave up)")
        return sb.ItemOutcome(state, "retry", "pending", error_type=error_type, error_message=message)

    def _answered(self, message: Any, job_id: int | None = None) -> sb.ItemOutcome:
        t = self.ctx.target
        answer = answer_from_message(message)
        # Batch prices: every token class at half the standard rate.
        cost = cost_usd(t.model.prices, answer.usage, batch=True) or 0.0
        verdict = judge(answer, t.preset.schema)
        rid = getattr(message, "id", None)
        if verdict.kind == OK:
            return sb.ItemOutcome("ok", "ok", "ok", fields=verdict.fields, usage=answer.usage, cost=cost,
                                  request_id=rid)
        if verdict.kind in (TRUNCATED, INVALID) and job_id is not None and \
                sb.answers_rejected(self.ctx.store, job_id, verdict.kind) == 0:
            # As in sync mode: one more ask (a truncated one with twice max_tokens, see BatchRunner._entry).
            return sb.ItemOutcome("failed", "retry", "pending", error_type=verdict.kind,
                                  error_message=verdict.message or verdict.kind, usage=answer.usage, cost=cost,
                                  request_id=rid)
        return sb.ItemOutcome("failed", "failed", "failed", error_type=verdict.kind,
                              error_message=verdict.message or verdict.kind, usage=answer.usage, cost=cost,
                              request_id=rid)
