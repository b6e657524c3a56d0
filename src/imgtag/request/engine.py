"""The request stage for synchronous mode: pace, call, retry, validate, store — one request at a time, many at once.

A request asks one image, or with --images-per-request K a pack of K (request/gather.py, request/packing.py):
one pacer permit, one concurrency slot and one budget reservation for the pack, and every image in it judged,
retried, billed and stored on its own. A pack the API refuses as invalid is asked again one image per request.

Retry policy (ours, not the SDK's, which runs with max_retries=0):
- 429: pause every start until retry-after, re-queue the image; does not use up the image's attempts
  (a cap still stops a run that is rate limited forever).
- 529 / 5xx / dropped connection / timeout: jittered exponential backoff, up to `max_attempts` per image.
- 400 / 413 (this image can never succeed): recorded at once.
- 401 / 403 / spend limit / unknown model: the whole run stops (exit 2), not one failure per image.
- max_tokens: one retry with twice the limit; invalid output: `validation_retries` more asks; refusal: none.
A request waiting to be asked again holds no permit; at most `max_unsettled` requests are started and not settled,
so fast failures cannot take in the whole folder while earlier images wait for their retry.
Every attempt is logged in the store with its cause and cost; a result is committed the moment it arrives.

A graceful stop (`stop`, the CLI's first Ctrl-C) sends nothing new and lets the requests already sent finish, for
at most `grace_s`: they are paid for, so their answers are stored as usual. Images not sent (not taken yet, waiting
for a permit, a retry's backoff or a provider's own wait) stay pending; an answer that would be asked again stays
pending too. Cancelling `run` stays the immediate abort: what is in flight is dropped and stays pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from imgtag.events import Events
from imgtag.presets import Preset
from imgtag.pricing.catalogue import ModelInfo
from imgtag.pricing.costs import cost_usd
from imgtag.pricing.estimate import RequestEstimate, pack_estimate
from imgtag.providers.base import (
    Exhausted,
    Fatal,
    ImageInput,
    ModelAnswer,
    Permanent,
    Provider,
    ProviderError,
    RateLimited,
    RateLimitSnapshot,
    RequestOptions,
    Transient,
)
from imgtag.providers.sending import NotSent, SendGate, use_gate
from imgtag.request.gather import gather_packs
from imgtag.request.pacer import Pacer, Permit
from imgtag.request.packing import ImagePack, split_answer
from imgtag.request.refusals import HOLD, STOP, FirstRefusals
from imgtag.store import Store, WorkKey
from imgtag.store.db import now_iso
from imgtag.util.words import plural
from imgtag.validate.schema import shape_of
from imgtag.validate.verdict import INVALID, OK, TRUNCATED, judge, kept_text

MAX_TOKENS_CEILING = 16_000
REFUSAL_POLL_S = 0.05

# The request's own task (`Engine._tasks`), also in the tasks it starts (a refused pack's images asked one by
# one): a graceful stop keeps a request whose images are on the wire, wherever in it they are.
_REQUEST: ContextVar[asyncio.Task[None] | None] = ContextVar("imgtag_request", default=None)


@dataclass(frozen=True)
class WorkItem:
    job_id: int
    sha256: str
    display: str
    image: ImageInput
    estimate: RequestEstimate


def _let_go_of_request(exc: ProviderError) -> None:
    """Drop what a provider error was raised through. Its traceback's frames hold the request's parameters (the
    image as base64), and the SDK error it replaced (its __context__, kept by `raise ... from None`) holds the
    response and so the request with its JSON body: ~450 KB for a 100 KB image, alive for as long as the error is.
    The engine keeps an error past its request: through a retry's backoff (the image holds no permit then, so
    nothing else bounds how many wait), among held refusals, as the run's fatal error. Only its fields are read."""
    exc.__traceback__ = exc.__context__ = exc.__cause__ = None


# (item, status "ok"/"failed", what this run paid for it in USD (None: unknown prices), error type)
ImageDone = Callable[[WorkItem, str, float | None, str | None], None]


@dataclass
class _Ask:
    """One image of a request, with what its earlier answers changed: room to answer, invalid answers so far."""

    item: WorkItem
    max_tokens: int
    invalid_answers: int = 0


@dataclass
class EngineSettings:
    key: WorkKey
    preset: Preset
    model: ModelInfo
    max_attempts: int = 6
    max_rate_limit_retries: int = 50
    validation_retries: int = 1
    budget_usd: float | None = None
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 30.0
    images_per_request: int = 1  # K > 1: packs of K (the provider must send ImagePacks: request/packing.py)
    # Requests started and not yet settled, at most: in flight, or waiting to be asked again. A request waiting out
    # a retry's backoff holds no permit, so the pacer alone would let a storm of fast failures take in image after
    # image while the earlier ones wait, each holding its image: memory would grow with the folder. The runner
    # allows twice --concurrency, which only binds when that many wait to be asked again.
    max_unsettled: int = 128
    shape_only: bool = False  # a provider that cannot be asked for a schema: answers are held to its shape only

    @property
    def schema(self) -> dict[str, Any]:
        """What an answer is judged against: the preset's full schema, or only its shape (Provider.follows_schema)."""
        return shape_of(self.preset.schema) if self.shape_only else self.preset.schema


@dataclass(frozen=True)
class BudgetStop:
    spent_usd: float
    reserved_usd: float
    requests_in_flight: int


@dataclass
class StopReport:
    """A graceful stop: the requests on the wire it waited for, the answers that came meanwhile, and those still
    unanswered when `grace_s` ran out (abandoned: their images stay pending, as after an abort)."""

    waiting_for: int
    grace_s: float
    answered: int = 0  # requests that came back with an answer during the stop (stored ok or failed)
    images: int = 0  # the images those answers settled
    abandoned: int = 0  # unanswered when grace_s ran out
    dropped: int = 0  # unanswered when the run was cancelled meanwhile (a second Ctrl-C)


@dataclass
class EngineStats:
    ok: int = 0
    failed: int = 0
    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    spent_usd: float = 0.0
    credits_spent: float = 0.0   # credit-billed providers: what this run's answers said they cost
    reserved_usd: float = 0.0
    budget_stopped: int = 0
    # When the budget stopped the run: spent, and held for the requests then in flight (their estimated cost).
    budget_stop: BudgetStop | None = None
    exhausted_pending: int = 0
    stopped_pending: int = 0  # images a graceful stop left unsent (or not asked again)
    failures_by_type: dict[str, int] = field(default_factory=dict)


class Engine:
    def __init__(self, store: Store, provider: Provider, settings: EngineSettings, pacer: Pacer,
                 run_id: int | None, *, events: Events | None = None, on_image: ImageDone | None = None) -> None:
        self.store = store
        self.events = events or Events(None)
        self.on_image = on_image
        self._paid: dict[int, float | None] = {}  # job id -> this run's cost of its answers so far (with on_image)
        self.provider = provider
        self.settings = settings
        self.pacer = pacer
        self.run_id = run_id
        self.stats = EngineStats()
        self.schema = settings.schema
        self.fatal: Fatal | None = None
        self.refusals: FirstRefusals[tuple[list[_Ask], str]] = FirstRefusals()
        self.budget_hit = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests_in_flight = 0  # requests that hold a permit (a pack holds one permit for its K images)
        self._received = self._settled = 0  # images taken from the input / given their outcome (or left)
        self._gate = SendGate()
        self._dispatcher: asyncio.Task[None] | None = None
        self._asking: Counter[asyncio.Task[None]] = Counter()  # requests with a call to the provider under way
        self._bound: asyncio.TimerHandle | None = None
        self.stopped: StopReport | None = None

    @property
    def unsettled(self) -> int:
        """Images taken from the input and not yet answered, failed or left unsent: gathered into a pack,
        waiting for a permit, in flight or waiting to be asked again (what progress must not count finished)."""
        return self._received - self._settled

    # -- dispatch ------------------------------------------------------------------------------

    async def run(self, items: AsyncIterator[WorkItem]) -> None:
        """Ask for every item; returns when all are settled, or after a graceful stop (`stop`) when the requests
        it waited for are."""
        dispatcher = self._dispatcher = asyncio.create_task(self._dispatch(items))
        try:
            await asyncio.wait({dispatcher})
            if not dispatcher.cancelled():  # cancelled only by a stop: nothing more is taken in
                dispatcher.result()
            while self._tasks:
                done, _ = await asyncio.wait(set(self._tasks))
                for task in done:
                    if not task.cancelled() and (error := task.exception()) is not None:
                        raise error
            if self.fatal is None and self.stopped is None:
                self._fail_refused(self.refusals.release())  # too few requests to call it the server's "no"
        finally:
            if self._bound is not None:
                self._bound.cancel()
            if self.stopped is not None:
                self.stopped.dropped = sum(1 for task in self._tasks if self._asking[task])
            dispatcher.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(dispatcher, *list(self._tasks), return_exceptions=True)

    def stop(self, grace_s: float, *, on_the_wire: int) -> StopReport:
        """Stop gracefully: send nothing new, and let the `on_the_wire` requests already sent finish, for at most
        `grace_s` seconds (then they are abandoned, as an abort would). `run` then returns. Call on the loop."""
        if self.stopped is not None:
            return self.stopped
        self.stopped = StopReport(waiting_for=on_the_wire, grace_s=grace_s)
        self._gate.close()  # a request still waiting inside the provider is never sent
        if self._dispatcher is not None:
            self._dispatcher.cancel()  # no new pack: not waiting for a decode, a permit or the budget
        for task in list(self._tasks):
            if not self._asking[task]:
                task.cancel()  # waiting for a permit or out a retry's backoff: nothing was sent
        self._bound = asyncio.get_running_loop().call_later(grace_s, self._abandon)
        return self.stopped

    def _abandon(self) -> None:
        """The graceful stop's time is up: whatever is still unanswered is dropped (pending), as an abort drops it."""
        if self.stopped is not None:
            self.stopped.abandoned = sum(1 for task in self._tasks if self._asking[task])
        for task in list(self._tasks):
            task.cancel()

    async def _dispatch(self, items: AsyncIterator[WorkItem]) -> None:
        ready = False
        async with contextlib.aclosing(self._units(items)) as units:
            async for pack in units:
                if not ready:  # first something to ask: no permit until a request could leave at once
                    await self.provider.ready()
                    ready = True
                over = self.fatal is None and not self.budget_hit and self._over_budget(pack)
                if over:
                    await self._settle_reservations(pack)
                if self.fatal is not None:
                    if self._draining(pack):
                        continue  # out of credits: every remaining file is still recorded, pending
                    break
                if self.budget_hit or (over and self._over_budget(pack)):
                    if not self.budget_hit:
                        self.stats.budget_stop = BudgetStop(self.stats.spent_usd, self.stats.reserved_usd,
                                                            len(self._tasks))
                    self.budget_hit = True
                    self.stats.budget_stopped += len(pack)
                    self._settled += len(pack)
                    continue  # keep draining so every file is still recorded; nothing more is paid for
                reserve = self._estimated_cost(pack)
                self.stats.reserved_usd += reserve
                asks = [_Ask(item, self.settings.preset.max_output_tokens) for item in pack]
                try:
                    await self._while_refusal_undecided()
                    await self._while_too_many_unsettled()
                    permit = await self._acquire(asks)
                except asyncio.CancelledError:  # a stop (or an abort): this pack was not sent
                    self.stats.reserved_usd -= reserve
                    raise
                if self.fatal is not None:
                    self._release(permit, success=False)
                    self.stats.reserved_usd -= reserve
                    if self._draining(pack):
                        continue
                    break
                task = asyncio.create_task(self._request(asks, permit, reserve))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _units(self, items: AsyncIterator[WorkItem]) -> AsyncIterator[list[WorkItem]]:
        """What one request asks: one image, or with --images-per-request a pack of K (request/gather.py)."""
        if self.settings.images_per_request > 1:
            async with contextlib.aclosing(gather_packs(self._receive(items),
                                                        self.settings.images_per_request)) as packs:
                async for pack in packs:
                    yield pack
            return
        async for item in self._receive(items):
            yield [item]

    async def _receive(self, items: AsyncIterator[WorkItem]) -> AsyncIterator[WorkItem]:
        async for item in items:
            self._received += 1
            yield item

    def _draining(self, pack: list[WorkItem]) -> bool:
        """After Exhausted (out of credits) the rest of the input is still walked, so every file gets its
        row and the count left pending is exact; nothing more is sent."""
        if isinstance(self.fatal, Exhausted):
            self.stats.exhausted_pending += len(pack)
            self._settled += len(pack)
            return True
        return False

    def _request_estimate(self, items: list[WorkItem]) -> RequestEstimate:
        """What one request for these images may cost in tokens (a pack carries the prompt once)."""
        s = self.settings
        if s.images_per_request <= 1:
            return items[0].estimate
        return pack_estimate([item.estimate for item in items], s.preset, s.model)

    def _estimated_cost(self, items: list[WorkItem]) -> float:
        return cost_usd(self.settings.model.prices, self._request_estimate(items).usage()) or 0.0

    def _over_budget(self, pack: list[WorkItem]) -> bool:
        budget = self.settings.budget_usd
        if budget is None:
            return False
        return self.stats.spent_usd + self.stats.reserved_usd + self._estimated_cost(pack) > budget

    async def _settle_reservations(self, pack: list[WorkItem]) -> None:
        """The budget cannot hold this pack's reservation beside those in flight: wait for requests in flight to
        end, since each one's actual cost (cached prefix, real output) replaces a reservation priced uncached.
        The run stops at the budget only when it would be crossed with nothing left in flight, so a small
        budget is spent, not merely reserved."""
        while self._tasks and self.fatal is None and self._over_budget(pack):
            await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)

    # -- pacing: one permit per request, whatever it carries ------------------------------------------

    async def _acquire(self, asks: list[_Ask]) -> Permit:
        estimate = self._request_estimate([a.item for a in asks])
        permit = await self.pacer.acquire(estimate.input_tokens, estimate.output_tokens)
        self.requests_in_flight += 1
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # Cancelled while it waited, and given the permit anyway: Python 3.11's asyncio.wait_for (in the pacer)
            # returns the result when the wait ends as the cancel comes, and drops the cancel. An abort frees the
            # permits of the requests it cancels at that very moment, so the dispatcher sent the next image.
            self._release(permit, success=False)
            raise asyncio.CancelledError
        return permit

    def _release(self, permit: Permit, *, success: bool) -> None:
        self.pacer.release(permit, success=success)
        self.requests_in_flight -= 1

    async def _ask(self, asks: list[_Ask], permit: Permit) -> list[ModelAnswer]:
        """One request: an image, or a pack (request/packing.py) whose answer is split, one per image. While it
        is under way a graceful stop waits for it (unless the provider had not sent it yet: NotSent)."""
        owner = _REQUEST.get()
        if owner is not None:
            self._asking[owner] += 1
        try:
            answers = await self._call(asks, permit)
        finally:
            if owner is not None:
                self._asking[owner] -= 1
                if not self._asking[owner]:
                    del self._asking[owner]
        if self.stopped is not None:
            self.stopped.answered += 1
            self.stopped.images += len(asks)
        return answers

    async def _call(self, asks: list[_Ask], permit: Permit) -> list[ModelAnswer]:
        s = self.settings

        def began(limits: RateLimitSnapshot) -> None:
            # The answer's headers came with its first byte (a streamed answer): the pacer learns the server's
            # limits now, not seconds later when the answer ends; its end may then only lower the level.
            self.pacer.observe(limits, permit)

        if s.images_per_request <= 1:
            ask = asks[0]
            return [await self.provider.describe(ask.item.image, RequestOptions(s.preset, s.model, ask.max_tokens,
                                                                                began=began))]
        pack = ImagePack.of([a.item.image for a in asks])
        answer = await self.provider.describe(pack, RequestOptions(s.preset, s.model,
                                                                   sum(a.max_tokens for a in asks), began=began))
        return split_answer(answer, len(asks))

    # -- one request: an image or a pack, each image settled on its own -------------------------------

    async def _request(self, asks: list[_Ask], permit: Permit, reserve: float) -> None:
        """A request's own task: the gate a stop closes, and the task a stop asks whether it is on the wire."""
        use_gate(self._gate)
        _REQUEST.set(asyncio.current_task())  # type: ignore[arg-type]
        await self._process(asks, permit, reserve)

    def _left_unsent(self, asks: list[_Ask]) -> None:
        """A graceful stop: these images are not asked (again) in this run; they stay pending."""
        self.stats.stopped_pending += len(asks)
        self._settled += len(asks)

    async def _process(self, asks: list[_Ask], permit: Permit | None, reserve: float) -> None:
        s = self.settings
        transient_failures = rate_limits = 0  # the request's: a pack meets them together
        try:
            while asks:
                if self.stopped is not None:
                    self._left_unsent(asks)  # nothing new is sent: an image to ask again waits for the next run
                    return
                if permit is None:
                    permit = await self._acquire(asks)
                if self.fatal is not None:
                    self._release(permit, success=False)
                    permit = None
                    return
                started = now_iso()
                self.stats.requests += 1
                try:
                    answers = await self._ask(asks, permit)
                except NotSent:  # the run stopped while this request waited inside the provider
                    self._release(permit, success=False)
                    permit = None
                    self.stats.requests -= 1
                    self._left_unsent(asks)
                    return
                except RateLimited as exc:
                    _let_go_of_request(exc)
                    self.pacer.on_rate_limited(permit, exc.retry_after, exc.limits)
                    self._release(permit, success=False)
                    permit = None
                    self.stats.rate_limited += 1
                    rate_limits += 1
                    self.events.emit("rate_limited", retry_after_s=exc.retry_after, images=len(asks),
                                     requests_in_flight=self.requests_in_flight)
                    self._log_error(asks, started, exc, outcome="retry")
                    if rate_limits > s.max_rate_limit_retries:
                        self._fail(asks, started, exc.error_type, f"gave up after {rate_limits} rate-limit answers")
                        return
                    if self.stopped is not None:
                        continue  # not asked again in this run (the top of the loop leaves it pending)
                    # This request honours retry-after itself; the pacer decides whether everyone pauses.
                    await asyncio.sleep(exc.retry_after if exc.retry_after is not None else s.backoff_base_s)
                    continue
                except Transient as exc:
                    _let_go_of_request(exc)
                    self.pacer.observe(exc.limits, permit)
                    self._release(permit, success=False)
                    permit = None
                    transient_failures += 1
                    if transient_failures >= s.max_attempts:
                        self._fail(asks, started, exc.error_type,
                                   f"{exc.message} (gave up after {plural(transient_failures, 'attempt')})", exc)
                        return
                    self._log_error(asks, started, exc, outcome="retry")
                    self.stats.retries += 1
                    if self.stopped is None:
                        await asyncio.sleep(self._backoff(transient_failures))
                    continue
                except Permanent as exc:
                    _let_go_of_request(exc)
                    self._release(permit, success=False)
                    permit = None
                    if len(asks) > 1 and self.stopped is not None:
                        self._log_error(asks, started, exc, outcome="retry")
                        self._left_unsent(asks)  # asked one by one in the next run
                        return
                    if len(asks) > 1:
                        # One bad image makes the whole pack invalid: ask one image per request (each with its
                        # own permit), so it fails alone. The pack's reservation stands until they are done.
                        self._log_error(asks, started, exc, outcome="retry")
                        await asyncio.gather(*(self._process([ask], None, 0.0) for ask in asks))
                        return
                    self._refused(asks, started, exc)
                    return
                except Fatal as exc:
                    _let_go_of_request(exc)
                    self._release(permit, success=False)
                    permit = None
                    self._log_error(asks, started, exc, outcome="fatal")
                    if self.fatal is None:
                        self.fatal = exc
                    return
                self.pacer.observe(answers[0].limits, permit)
                self._release(permit, success=True)
                permit = None
                if self.refusals.open:
                    self._fail_refused(self.refusals.answered())  # they were about their images after all
                again = []  # images whose answer is asked again (together, if several)
                for ask, answer in zip(asks, answers, strict=True):
                    outcome = self._settle_answer(ask.item, started, answer, ask.max_tokens, ask.invalid_answers)
                    if outcome == "retry_truncated":
                        ask.max_tokens = min(MAX_TOKENS_CEILING, ask.max_tokens * 2)
                    elif outcome == "retry_invalid":
                        ask.invalid_answers += 1
                    else:
                        continue
                    self.stats.retries += 1
                    again.append(ask)
                asks = again
        finally:
            if permit is not None:
                self._release(permit, success=False)
            self.stats.reserved_usd -= reserve

    async def _while_too_many_unsettled(self) -> None:
        """Start nothing new while `max_unsettled` requests are in flight or waiting to be asked again
        (EngineSettings.max_unsettled): the images a run holds stay bounded whatever the folder's size."""
        while len(self._tasks) >= self.settings.max_unsettled and self.fatal is None:
            await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)

    async def _while_refusal_undecided(self) -> None:
        """A refusal is held and nothing was answered yet: start nothing new until the requests in flight tell
        whether the server refuses everything (then the run stops having sent only those)."""
        while self.refusals.open and self.refusals.held and self.requests_in_flight > 0 and self.fatal is None:
            await asyncio.sleep(REFUSAL_POLL_S)

    def _refused(self, asks: list[_Ask], started: str, exc: Permanent) -> None:
        """A refusal that may be about the image or about the whole run (request/refusals.py)."""
        verdict, which = self.refusals.refused((asks, started), exc)
        if verdict == HOLD:
            return  # pending until the run knows which it is
        if verdict == STOP:
            for (held, when), why in which:
                self._log_error(held, when, why, outcome="fatal")
            if self.fatal is None:
                self.fatal = self.refusals.stop_error()
            return
        self._fail_refused(which)
        self._fail(asks, started, exc.error_type, exc.message, exc)

    def _fail_refused(self, refusals: list[tuple[tuple[list[_Ask], str], Permanent]]) -> None:
        for (asks, started), exc in refusals:
            self._fail(asks, started, exc.error_type, exc.message, exc)

    def _backoff(self, failures: int) -> float:
        s = self.settings
        ceiling = min(s.backoff_cap_s, s.backoff_base_s * 2 ** (failures - 1))
        return ceiling * random.uniform(0.5, 1.0)  # jitter: retries from many images must not synchronise

    def _settle_answer(self, item: WorkItem, started: str, answer: ModelAnswer, max_tokens: int,
                       invalid_answers: int) -> str:
        s = self.settings
        # None without prices: the store records those tokens as paid at an unknown price, never as $0.
        cost = cost_usd(s.model.prices, answer.usage, request_prompt=answer.request_prompt_tokens)
        self.stats.spent_usd += cost or 0.0
        if self.on_image is not None:
            paid = self._paid.get(item.job_id, 0.0)
            self._paid[item.job_id] = None if paid is None or cost is None else paid + cost
        if answer.credits is not None and answer.credits.amount is not None:
            self.stats.credits_spent += answer.credits.amount
        verdict = judge(answer, self.schema)
        common = {"started_at": started, "mode": "sync", "http_status": 200, "request_id": answer.request_id,
                  "usage": answer.usage, "cost": cost,
                  "credits": (answer.credits.amount, answer.credits.remaining) if answer.credits else None}
        if verdict.kind == OK:
            self.store.record_attempt(item.job_id, self.run_id, outcome="ok", **common,
                                      commit_job={"status": "ok", "mode": "sync", "fields": verdict.fields,
                                                  "request_id": answer.request_id})
            self.stats.ok += 1
            self._settled += 1
            self._image_done(item, "ok", None)
            return "done"
        can_retry = (verdict.kind == TRUNCATED and max_tokens < min(MAX_TOKENS_CEILING,
                                                                     s.preset.max_output_tokens * 2)) or (
            verdict.kind == INVALID and invalid_answers < s.validation_retries)
        common["raw_answer"] = kept_text(answer)  # paid for: kept in the store even though it is not used
        if can_retry:
            self.store.record_attempt(item.job_id, self.run_id, outcome="retry", error_type=verdict.kind,
                                      error_message=verdict.message, **common)
            return "retry_truncated" if verdict.kind == TRUNCATED else "retry_invalid"
        message = verdict.message or verdict.kind
        if verdict.kind == TRUNCATED:
            message = f"{message} (also at max_tokens={max_tokens})"
        self.store.record_attempt(item.job_id, self.run_id, outcome="failed", error_type=verdict.kind,
                                  error_message=message, **common,
                                  commit_job={"status": "failed", "mode": "sync", "error_type": verdict.kind,
                                              "error_message": message, "request_id": answer.request_id})
        self._count_failure(verdict.kind)
        self._image_done(item, "failed", verdict.kind)
        return "done"

    def _image_done(self, item: WorkItem, status: str, error_type: str | None) -> None:
        if self.on_image is not None:
            self.on_image(item, status, self._paid.pop(item.job_id, 0.0), error_type)

    def _log_error(self, asks: list[_Ask], started: str, exc: ProviderError, *, outcome: str) -> None:
        for ask in asks:  # a pack's failure is each of its images' attempt
            self.store.record_attempt(ask.item.job_id, self.run_id, started_at=started, outcome=outcome, mode="sync",
                                      http_status=exc.http_status, error_type=exc.error_type,
                                      error_message=exc.message, request_id=exc.request_id)

    def _fail(self, asks: list[_Ask], started: str, error_type: str, message: str,
              exc: ProviderError | None = None) -> None:
        for ask in asks:
            self.store.record_attempt(ask.item.job_id, self.run_id, started_at=started, outcome="failed",
                                      mode="sync", http_status=exc.http_status if exc else None,
                                      error_type=error_type, error_message=message,
                                      request_id=exc.request_id if exc else None,
                                      commit_job={"status": "failed", "mode": "sync", "error_type": error_type,
                                                  "error_message": message})
            self._count_failure(error_type)
            self._image_done(ask.item, "failed", error_type)

    def _count_failure(self, error_type: str) -> None:
        self.stats.failed += 1
        self._settled += 1
        self.stats.failures_by_type[error_type] = self.stats.failures_by_type.get(error_type, 0) + 1
