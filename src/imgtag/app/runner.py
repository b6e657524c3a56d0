"""Wires the stages together for `run`, `retry` and `scan`: config -> store -> ingest -> requests -> export."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from imgtag.app.copytally import CopyTally
from imgtag.app.progress import BatchView, Progress, Snapshot, progress_fields, tick_forever
from imgtag.app.stopping import RunStopped
from imgtag.app.summary import Summary, finished_fields, summarize
from imgtag.config.exits import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from imgtag.config.options import option
from imgtag.config.runconfig import RunConfig, Target
from imgtag.events import Events
from imgtag.events.payloads import dollars, target_fields
from imgtag.export import fileset
from imgtag.export.writer import ExportRefused, not_written_message, write_exports
from imgtag.ingest.pipeline import Ingested, IngestOptions, Ingestor
from imgtag.pricing.estimate import Estimator, estimate_request, reserve_tokens
from imgtag.providers.base import ImageInput, Provider, max_edge_of
from imgtag.request.engine import Engine, EngineSettings, EngineStats, StopReport, WorkItem
from imgtag.request.learned_limits import Memory
from imgtag.request.pace_words import credits_used, pace_words
from imgtag.request.pacer import Pacer
from imgtag.request.packing import pack_images, pack_size
from imgtag.request.template import prepare_template
from imgtag.request.warm_prefix import PrefixMemory
from imgtag.request.warmup import pace_warm_up, warm_cache_first
from imgtag.store import Store
from imgtag.util.money import usd
from imgtag.util.words import plural


@dataclass
class RunOutcome:
    exit_code: int
    summary: Summary
    message: str | None = None
    estimator: Estimator | None = None
    exports: list[Path] = field(default_factory=list)
    export_notes: list[str] = field(default_factory=list)  # per-image formats' one-line summaries
    not_written: str | None = None  # the files per-image formats could not write, named (exit 1)
    peak_in_flight: int = 0
    rate_limited: int = 0
    requests: int = 0
    done_before: int = 0                 # files an earlier run had already answered
    spent_to_date_usd: float | None = None  # this target, earlier runs included


class Run:
    """One `imgtag run`/`retry` invocation against an open store."""

    def __init__(self, cfg: RunConfig, store: Store, target: Target, provider: Provider | None,
                 command: str = "run") -> None:
        self.cfg = cfg
        self.store = store
        self.target = target
        self.provider = provider
        self.key = target.key
        self.run_id = store.start_run(command, key=self.key, preset=target.preset.name, mode=cfg.mode)
        self.started_at = store.run_started(self.run_id)
        # Results and status cover this run's inputs from now on, their paths measured from the folder's one base
        # (export/fileset.py). A dry run changes neither what they cover nor any membership.
        self.path_base = fileset.path_base(store, cfg.inputs)
        self.seen_run = None if cfg.dry_run else self.run_id
        if command == "run" and not cfg.dry_run:
            fileset.begin(store, self.run_id)
        if provider is not None:
            provider.attach_store(store)  # e.g. what structured-output mode a server accepted last time
        self.ok = self.failed = self.skipped = self.finished = 0
        self.done_before = 0  # files whose answer an earlier run stored (a resume)
        self.in_batches = 0  # sync mode: files waiting in batches a detached run left (not done, not asked again)
        self.spent_before = store.spent(self.key)  # this target's spend before this run
        self.queued: set[int] = set()  # job ids sent this run (ints: a million of them is a few tens of MB)
        self.engine: Engine | None = None
        self.progress: Progress | None = None
        self.batcher: Any = None
        self.ingestor: Ingestor | None = None
        self.clock = time.monotonic()
        self.events = Events(cfg.on_event)
        self.events.prepare(run_id=self.run_id, command=command, out=str(cfg.out), mode=cfg.mode, engine=cfg.engine,
                            dry_run=cfg.dry_run, target=target_fields(cfg, target))
        self.copies: dict[int, list[str]] = {}  # job id -> byte-identical copies this run settles with it
        self.copy_tally = CopyTally()  # those copies, for the progress line's ok and failed
        self.asked: dict[int, str] = {}  # batch mode, with events: job id -> the path it was asked for
        self.told: dict[int, str] = {}  # batch mode, Ray: jobs settled before the walk met their file

    # -- events (docs/events.md) ---------------------------------------------------------------

    def image_done(self, display: str, status: str, *, cost: float | None = 0.0, error_type: str | None = None,
                   cached: bool = False) -> None:
        """One file reached ok, failed or skipped in this run (`cached`: its answer was already in the store)."""
        if self.events.enabled:
            self.events.emit("image_done", path=display, status=status, cost_usd=dollars(cost), error_type=error_type,
                             cached=cached)

    def job_done(self, job_id: int, display: str, status: str, cost: float | None, error_type: str | None) -> None:
        """A job this run asked settled: its image, then each copy of it that shares the answer (no cost)."""
        self.image_done(display, status, cost=cost, error_type=error_type)
        for copy in self.copies.pop(job_id, ()):
            self.image_done(copy, status, cost=0.0, error_type=error_type, cached=True)

    def _engine_image(self, item: WorkItem, status: str, cost: float | None, error_type: str | None) -> None:
        self.job_done(item.job_id, item.display, status, cost, error_type)

    def _batch_image(self, job_id: int, status: str, cost: float | None, error_type: str | None) -> None:
        display = self.asked.pop(job_id, None)
        if display is None:  # in a batch an earlier run submitted and this run did not meet: the job's first file
            row = self.store.db.execute("SELECT f.display FROM jobs j JOIN files f ON f.id = j.file_id"
                                        " WHERE j.id = ?", (job_id,)).fetchone()
            display = row[0] if row else ""
            self.told[job_id] = display  # when the walk meets this file, it was told already
        self.job_done(job_id, display, status, cost, error_type)

    def _copy_done(self, job_id: int, status: str, display: str) -> None:
        """A byte-identical copy of an image this run asked: told now if that answer is in, else with it."""
        if status == "ok" or (status == "failed" and not self.cfg.retry_failed):
            self.image_done(display, status, error_type=self._job_error(job_id) if status == "failed" else None,
                            cached=True)
        else:
            self.copies.setdefault(job_id, []).append(display)

    def _job_error(self, job_id: int) -> str | None:
        row = self.store.db.execute("SELECT error_type FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row[0] if row else None

    def _file_done(self, ing: Ingested) -> None:
        """A file settled without a request: unreadable or skipped, or answered by an earlier run."""
        if not self.events.enabled:
            return
        status = ing.record.status
        if status != "ok":
            self.image_done(ing.display, status, error_type=ing.record.reason_code)
            return
        k = self.key
        row = self.store.db.execute(
            "SELECT status, error_type, id FROM jobs WHERE sha256=? AND preset_version=? AND provider=? AND model=?",
            (ing.record.sha256, k.preset_version, k.provider, k.model)).fetchone()
        if row is not None and row[0] == "batched" and self.cfg.mode == "batch":
            if row[2] in self.asked:  # a copy of an image in a live batch: told with it
                self.copies.setdefault(row[2], []).append(ing.display)
            else:
                self.asked[row[2]] = ing.display  # collected by this run: image_done then
        elif row is not None and self.told.get(row[2]) == ing.display:
            del self.told[row[2]]
        elif row is not None and row[0] in ("ok", "failed"):
            self.image_done(ing.display, row[0], error_type=row[1] if row[0] == "failed" else None, cached=True)

    async def emit_progress(self) -> None:
        """A progress event once a second while something changed."""
        last: dict[str, object] | None = None
        while True:
            await asyncio.sleep(1.0)
            fields = progress_fields(self.snapshot(), time.monotonic() - self.clock)
            same = {k: v for k, v in fields.items() if k != "elapsed_s"}
            if same != last:
                last = same
                self.events.emit("progress", **fields)

    def emit_finished(self, summary: Summary, exit_code: int, message: str | None, *,
                      interrupted: bool = False) -> None:
        self.events.emit("run_finished", **finished_fields(summary, exit_code, elapsed_s=time.monotonic() - self.clock,
                                                           done_before=self.done_before, message=message,
                                                           interrupted=interrupted))

    # -- which files still need a paid answer --------------------------------------------------

    def _needs_work(self, sha256: str | None) -> bool:
        return bool(sha256) and self._status_needs_work(self.store.job_status(sha256 or "", self.key))

    def _status_needs_work(self, status: str | None) -> bool:
        if status is None or status == "pending":
            return True
        return status == "failed" and self.cfg.retry_failed

    def _needs_decode(self, row: Any) -> bool:
        # The row comes with its job's status for this target (Ingestor reads both in bulk: no query per file).
        if row["status"] != "ok":
            return self.cfg.retry_failed  # retry re-examines files that could not be read last time
        return bool(row["sha256"]) and self._status_needs_work(row["job_status"]) and not self.cfg.dry_run

    def note_done_before(self, sha: str, cached: Any = None) -> bool:
        """Count a file whose answer needs no request now as done before only when an earlier run settled it: a
        copy of an image this run answered, or an answer this run collected from a batch, is this run's work.
        `cached`: the file's stored row with its job (an unchanged file), which already says so. True if counted."""
        if cached is not None:
            before = cached["job_status"] in ("ok", "failed") and cached["job_updated"] < self.started_at
        else:
            before = self.store.answered_before(sha, self.key, self.started_at)
        self.done_before += before
        return before

    def _tally_if_copy(self, sha: str, file_id: int, status: str | None) -> None:
        """A file this run's answer settles (or a batch this run collects will) without a request of its own: a
        copy, unless it is the file its job was asked for, which the engine or the batch counts."""
        row = self.store.db.execute(
            "SELECT id, file_id FROM jobs WHERE sha256=? AND preset_version=? AND provider=? AND model=?",
            (sha, self.key.preset_version, self.key.provider, self.key.model)).fetchone()
        if row is not None and row[1] != file_id:
            self.copy_tally.add(status, row[0])

    def _count(self, ing: Ingested, settled: bool) -> None:
        if ing.record.status == "skipped":
            self.skipped += 1
        elif ing.record.status == "failed":
            self.failed += 1
        if settled:
            self.finished += 1

    def _claim(self, ing: Ingested, sha: str) -> int | None:
        """This image's job id, unless this run already sent the job (a byte-identical copy): then it is settled."""
        job = self.store.job_for(sha, self.key, ing.file_id)
        if job.id in self.queued:
            self.copy_tally.add(job.status, job.id)
            self._count(ing, settled=True)
            if self.events.enabled:
                self._copy_done(job.id, job.status, ing.display)
            return None
        self.queued.add(job.id)
        return job.id

    async def work_items(self, ingestor: Ingestor, estimator: Estimator | None) -> AsyncIterator[WorkItem]:
        for_model = self.target.model
        # The first file that needs decoding will (almost always) need an answer: start the SDK's import then,
        # beside discovery and decoding. A rerun with every answer in the store never imports it.
        preload = self.provider.preload if self.provider is not None and estimator is None else None
        async for ing in ingestor.run(needs_decode=self._needs_decode, decoding=preload):
            if ing.record.status != "ok" or not ing.record.sha256:
                self._count(ing, settled=True)
                self._file_done(ing)
                continue
            sha = ing.record.sha256
            # An unchanged file's job status was read with its row; the status of a decoded one is read now.
            status = ing.cached["job_status"] if ing.cached is not None else self.store.job_status(sha, self.key)
            if not self._status_needs_work(status):
                if self.cfg.mode != "batch" and status == "batched":
                    self.in_batches += 1
                else:
                    if not self.note_done_before(sha, ing.cached):
                        self._tally_if_copy(sha, ing.file_id, status)
                    self._file_done(ing)
                self._count(ing, settled=True)
                continue
            if estimator is not None:
                if ing.duplicate_of is None:
                    estimator.add(ing.record.width or 0, ing.record.height or 0)
                self._count(ing, settled=True)
                continue
            job_id = self._claim(ing, sha)
            if job_id is None:
                continue
            report = ing.report
            if report is None or report.encoded is None or report.media_type is None:
                self._count(ing, settled=True)  # cannot happen with needs_decode, but never send nothing
                continue
            if self.events.enabled and self.cfg.mode == "batch":
                self.asked[job_id] = ing.display
            tokens = reserve_tokens(report.visual_tokens or 0, report.out_width, report.out_height, for_model)
            est = estimate_request(tokens, self.target.preset, for_model)
            self.finished += 1
            yield WorkItem(job_id=job_id, sha256=sha, display=ing.display,
                           image=ImageInput(report.encoded, report.media_type), estimate=est)

    def snapshot(self) -> Snapshot:
        eng = self.engine
        pacer = eng.pacer if eng else None
        in_flight = requests_in_flight(self.provider, eng)
        bat = self.batcher.stats if self.batcher is not None else None  # batch mode: BatchRunner counters
        spent: float | None = (eng.stats.spent_usd if eng else 0.0) + (bat.spent_usd if bat else 0.0)
        if self.target.model.prices is None:
            # "cost unknown" while it runs, never $0 (issue 16): the first answer bills tokens at prices nobody
            # gave. The summary, which knows whether any token was billed, may still say $0.00 at the end.
            spent = None
        batch_view = None if bat is None else BatchView(submitted=bat.submitted, processing=bat.in_batches,
                                                        collected=bat.ok + bat.failed, batches=len(bat.live))
        copies = self.copy_tally
        copies.settle(self.store.db)
        return Snapshot(
            discovered=self.ingestor.counters.discovered if self.ingestor else 0,
            finished=self.finished - (eng.unsettled if eng else 0),
            ok=(eng.stats.ok if eng else 0) + (bat.ok if bat else 0) + copies.ok,
            failed=self.failed + (eng.stats.failed if eng else 0) + (bat.failed if bat else 0) + copies.failed,
            skipped=self.skipped,
            in_flight=in_flight + (bat.in_batches if bat else 0),
            spent_usd=spent,
            pace=pace_words(pacer, self.provider) if pacer else "",
            credits_used=credits_used(self.provider, eng.stats.credits_spent if eng else 0.0),
            discovery_done=self.ingestor.counters.discovery_done if self.ingestor else False,
            extra="",
            counted=self.ingestor.counted if self.ingestor else None,
            done_before=self.done_before,
            spent_to_date_usd=None if spent is None or self.spent_before is None else self.spent_before + spent,
            batch=batch_view,
            stopping=eng is not None and eng.stopped is not None,
        )

    def ingest_options(self, request: Any) -> IngestOptions:
        cfg = self.cfg
        return IngestOptions(inputs=cfg.inputs, request=request, workers=cfg.workers,
                             skip_near_duplicates=cfg.skip_near_duplicates, exclude=[str(self.store.out_dir.resolve())],
                             stdin=cfg.stdin, source=cfg.source, path_base=self.path_base, seen_run=self.seen_run,
                             key=self.key)

    async def record_count(self) -> None:
        """Store the up-front count as soon as the walk ends, so `status` during a run reports every input."""
        while self.ingestor is None or self.ingestor.counted is None:
            await asyncio.sleep(0.05 if self.events.enabled else 0.5)
        self.events.started(total_files=self.ingestor.counted)
        if self.seen_run is not None:
            fileset.record_count(self.store, self.run_id, self.ingestor.counted)

    def final_count(self, ingestor: Ingestor, interrupted: bool) -> int | None:
        """The count of this run's inputs, waited for briefly when the run stopped before the walk ended."""
        counted = ingestor.counted if interrupted else ingestor.finish_count(timeout=2.0)
        if counted is not None and self.seen_run is not None:
            fileset.record_count(self.store, self.run_id, counted)
        return counted

    async def execute(self, stream: TextIO | None = None) -> RunOutcome:
        cfg = self.cfg
        request = prepare_template(cfg, self.target, encode=not cfg.dry_run,
                                   provider_max_edge=max_edge_of(self.provider))
        ingestor = Ingestor(self.store, self.ingest_options(request), self.run_id)
        self.ingestor = ingestor
        progress = self.progress = Progress(self.snapshot, stream=stream, enabled=cfg.progress)
        ticker = asyncio.create_task(tick_forever(progress))
        emitting = asyncio.create_task(self.emit_progress()) if self.events.enabled else None
        counting = asyncio.create_task(self.record_count())
        counted = None
        estimator = (Estimator(self.target.preset, models=[self.target.model.id], min_short=cfg.min_side,
                               infos={self.target.model.id: self.target.model},
                               per_request=cfg.images_per_request) if cfg.dry_run else None)
        message = None
        fatal = None
        interrupted = False
        try:
            if cfg.dry_run:
                async for _ in self.work_items(ingestor, estimator):
                    pass
            elif cfg.mode == "batch":
                from imgtag.request.batch.runner import BatchRunner

                assert self.provider is not None
                self.batcher = BatchRunner(self.store, self.provider, self.target, cfg, self.run_id, progress,
                                           events=self.events,
                                           on_image=self._batch_image if self.events.enabled else None)
                await self.batcher.run(self.work_items(ingestor, None))
                fatal = self.batcher.fatal
                message = self.batcher.message
            else:
                assert self.provider is not None
                pacer = Pacer(max_concurrency=cfg.concurrency)
                pacer.observe(self.provider.declared_limits())  # a documented rate, for APIs without headers
                memory = Memory(self.store, self.provider, self.key.provider)
                memory.seed(pacer)  # start at the pace (and burst) a previous run learned for this account
                prefix = PrefixMemory(self.store, self.key, self.provider, self.target.preset, self.target.model)
                provider = warm_cache_first(pack_images(self.provider, cfg.images_per_request),
                                            cache_warm=prefix.known_warm())
                self.engine = Engine(self.store, provider, EngineSettings(
                    key=self.key, preset=self.target.preset, model=self.target.model, budget_usd=cfg.budget,
                    max_attempts=cfg.max_attempts, images_per_request=pack_size(self.provider, cfg.images_per_request),
                    max_unsettled=2 * cfg.concurrency,
                    validation_retries=1 if self.provider.reask_invalid else 0,
                    shape_only=not self.provider.follows_schema),
                    pace_warm_up(pacer, provider, self.target.preset, self.target.model), self.run_id,
                    events=self.events, on_image=self._engine_image if self.events.enabled else None)
                try:
                    await self.engine.run(self.work_items(ingestor, None))
                finally:
                    memory.save(pacer)
                    prefix.remember()
                if self.engine.stopped is not None:
                    raise RunStopped(self.engine.stopped)  # ends as an interrupted run, its answers stored
                fatal = self.engine.fatal
                if self.engine.budget_hit:
                    message = budget_message(cfg.budget, self.engine.stats)
                if self.in_batches:
                    from imgtag.app.messages import in_batches_note

                    note = in_batches_note(self.in_batches, self.store.out_dir)
                    message = f"{message}; {note}" if message else note
        except (asyncio.CancelledError, KeyboardInterrupt, RunStopped):
            interrupted = True  # the line is erased: the CLI prints one sentence instead
            raise
        finally:
            ticker.cancel()
            counting.cancel()
            if emitting is not None:
                emitting.cancel()
            counted = self.final_count(ingestor, interrupted)
            if not interrupted and self.seen_run is not None:
                ingestor.reserve_rest(seconds=10.0)
            ingestor.close()
            progress.close(erase=interrupted)
        summary = summarize(self.store.db, self.key, run_id=self.run_id, counted=counted)
        exports: list[Path] = []
        notes: list[str] = []
        unwritten: list[str] = []
        refused: str | None = None
        if not cfg.dry_run:
            try:
                exports = write_exports(self.store, self.store.get_meta("target"), cfg.formats,
                                        cfg.export_options, notes, unwritten, skip_unchanged=True)
            except ExportRefused as exc:  # everything is in the store; the user fixes this and re-exports
                exports, refused = exc.written, f"{exc} (results are saved; re-export with `imgtag export`)"
        if fatal is not None:
            code, message = getattr(fatal, "exit_code", EXIT_CONFIG), fatal.message
            if code == EXIT_FAILED:  # Exhausted: out of credits, the rest waits for a later run
                pending = summary.by_status.get("pending", 0)
                message = (f"{message}: {pending} images left pending; add credits and run the same command "
                           "to continue")
        elif refused is not None:
            code, message = EXIT_CONFIG, refused
        elif not cfg.dry_run and (summary.by_status.get("failed", 0) or summary.by_status.get("pending", 0)):
            code = EXIT_FAILED  # a dry run is a preview, as `scan` is: files it cannot read are news, not a failure
        else:
            code = EXIT_OK
        not_written = not_written_message(unwritten)
        if not_written is not None:
            code = code or EXIT_FAILED  # README: 1 when something was not done; a worse code stays
        if cfg.mode == "batch" and self.batcher is not None and self.batcher.detached and fatal is None:
            code = EXIT_OK
        if self.missing_args and summary.files == 0:
            code = EXIT_CONFIG  # nothing to do because nothing matched: a usage error (the CLI says which)
        self.store.finish_run(self.run_id, code)
        self.emit_finished(summary, code, message or refused or not_written)
        eng = self.engine
        return RunOutcome(exit_code=code, summary=summary, message=message, estimator=estimator, exports=exports,
                          export_notes=notes, not_written=not_written,
                          peak_in_flight=eng.pacer.peak_in_flight if eng else 0,
                          rate_limited=eng.stats.rate_limited if eng else 0,
                          requests=eng.stats.requests if eng else 0, done_before=self.done_before,
                          spent_to_date_usd=self.store.spent(self.key))

    def stop(self, grace_s: float) -> StopReport | None:
        """Stop gracefully (sync mode): send nothing new and wait at most `grace_s` for the requests on the wire,
        then end as interrupted (RunStopped). None, doing nothing, when there is nothing to wait for (batch mode,
        Ray, nothing sent yet): the caller aborts as before. Call on the run's event loop."""
        engine = self.engine
        if engine is None:
            return None
        on_wire = requests_in_flight(self.provider, engine)
        if engine.stopped is None and on_wire == 0:
            return None
        if self.progress is not None:
            self.progress.erase()  # the caller's sentence goes where the live line was; the line comes back below
        return engine.stop(grace_s, on_the_wire=on_wire)

    def interrupted(self, exit_code: int) -> str:
        """Mark this run interrupted in the store; returns the one line to print."""
        from imgtag.app.messages import interrupted_message
        from imgtag.store import batches as sb
        from imgtag.store.runstate import mark_interrupted

        mark_interrupted(self.store.db, self.run_id, exit_code)
        if self.events.enabled:
            counted = self.ingestor.counted if self.ingestor else None
            self.emit_finished(summarize(self.store.db, self.key, run_id=self.run_id, counted=counted), exit_code,
                               "interrupted", interrupted=True)
        live = len(sb.live_batches(self.store, self.key)) if self.cfg.mode == "batch" else 0
        return interrupted_message(live, str(self.cfg.out), self.engine.stopped if self.engine else None)

    @property
    def missing_args(self) -> list[str]:
        return list(self.ingestor.counters.stats.missing_args) if self.ingestor else []


def budget_message(budget: float | None, stats: EngineStats) -> str:
    """What a --budget stop held back: spent and reserved for the requests in flight when it stopped, and the
    images left pending."""
    stop = stats.budget_stop
    held = ""
    if stop is not None:
        flight = (f"{usd(stop.reserved_usd)} reserved for {plural(stop.requests_in_flight, 'request')} in flight"
                  if stop.requests_in_flight else "nothing in flight")
        held = f" ({usd(stop.spent_usd)} spent, {flight})"
    left = stats.budget_stopped
    return (f"budget of {usd(budget)} reached{held}: {plural(left, 'image')} {'was' if left == 1 else 'were'} "
            f"not sent (run again to send them: {option('budget')} caps each run)")


def requests_in_flight(provider: Provider | None, engine: Engine | None) -> int:
    """Requests sent and not yet answered: the provider's own count when it keeps one (a request waiting for a
    local server's adaptive limit, or for the SDK's import, is not in flight), else the engine's count of the
    requests it started (one per pack)."""
    if engine is None:
        return 0
    if provider is not None and provider.counts_on_the_wire:
        return provider.on_the_wire_now
    return engine.requests_in_flight
