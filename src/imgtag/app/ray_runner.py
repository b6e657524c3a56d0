"""`imgtag run --engine ray`: the driver, a `Run` whose request stage is a Ray cluster. Discover and hash as
the local engine does (same ingest stage, same store), write the pending work as manifest shards, run the Ray
Data pipeline (decode -> ask), and ingest the result shards into the store while it runs. The store stays the
single source of truth: a rerun ingests what a killed driver left in the work folder, then plans only what is
still pending. What touches Ray itself is in request/distributed/ (pipeline, pacer actor, cluster); this module
wires it to the stages, as runner.py does for the local engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

from imgtag.app.progress import Progress, Snapshot, progress_fields, tick_forever
from imgtag.app.runner import Run, RunOutcome
from imgtag.app.stopping import interrupt_raises_here
from imgtag.app.summary import summarize
from imgtag.config.exits import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from imgtag.export.writer import ExportRefused, not_written_message, write_exports
from imgtag.ingest.pipeline import Ingestor
from imgtag.providers.base import max_edge_of
from imgtag.request.distributed.pipeline import (
    ENV_PREFIXES,
    build_pipeline,
    pacer_view,
    ray_kill,
    shareable_env,
)
from imgtag.request.distributed.results import IngestTally, ingest_all, ingest_shard
from imgtag.request.distributed.workfolder import WorkFolder
from imgtag.request.engine import EngineSettings
from imgtag.request.learned_limits import Memory
from imgtag.request.packing import pack_size
from imgtag.request.template import prepare_template
from imgtag.request.warm_prefix import PrefixMemory
from imgtag.request.warmup import needs_warm_up

_DONE = object()
ABANDON_WAIT_S = 10.0  # Ray Data's executor shutdown: its loop thread joined within 2 s, then its actors killed


class _Abandoned(Exception):
    """Raised in the pump thread when the run stops before the pipeline ends."""


class DistributedRun(Run):
    """One `run`/`retry` with `--engine ray`."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.planned = self.returned = 0
        self.tally = IngestTally()
        self.pace = "starting Ray"
        # Requests holding the cluster pacer's permits, as its actor last said (every 2 s): what the workers
        # have sent and not had answered. Images planned and not yet returned also wait in Ray's queues.
        self.cluster_in_flight = 0
        self.memory: Memory | None = None
        self.prefix: PrefixMemory | None = None
        self.pacer: Any = None
        if self.events.enabled:
            self.tally.settled = []
            self._last_progress = 0.0

    def _tell_settled(self, *, before_plan: bool = False) -> None:
        """image_done for the jobs the shards applied since the last call, then progress once a second."""
        if self.tally.settled is None:
            return
        for job_id, display, status, cost, error_type in self.tally.settled:
            self.job_done(job_id, display, status, cost, error_type)
            if before_plan:  # a killed driver's answers: when the plan meets the file, it was told already
                self.told[job_id] = display
        self.tally.settled.clear()
        if time.monotonic() - self._last_progress >= 1.0:
            self._last_progress = time.monotonic()
            self.events.emit("progress", **progress_fields(self.snapshot(), time.monotonic() - self.clock))

    def _needs_decode(self, row: Any) -> bool:
        # Unchanged files are planned from the store; the workers decode what is sent.
        return row["status"] != "ok" and self.cfg.retry_failed

    def snapshot(self) -> Snapshot:
        ing = self.ingestor
        # Without prices the spend is unknown (Run.snapshot): "cost unknown", never $0.
        spent = None if self.target.model.prices is None else self.tally.spent_usd
        to_date = None if spent is None or self.spent_before is None else self.spent_before + spent
        return Snapshot(discovered=ing.counters.discovered if ing else 0, finished=self.finished,
                        ok=self.tally.ok, failed=self.failed + self.tally.failed, skipped=self.skipped,
                        in_flight=self.cluster_in_flight, spent_usd=spent, pace=self.pace,
                        discovery_done=ing.counters.discovery_done if ing else False,
                        counted=ing.counted if ing else None, done_before=self.done_before,
                        spent_to_date_usd=to_date)

    # -- plan -------------------------------------------------------------------------------------

    async def _plan(self, folder: WorkFolder, store_id: str) -> list[str]:
        cfg = self.cfg
        request = prepare_template(cfg, self.target, encode=False, provider_max_edge=max_edge_of(self.provider))
        self.ingestor = Ingestor(self.store, self.ingest_options(request), self.run_id)
        folder.remove_manifests()
        writer = folder.manifest_writer(uuid.uuid4().hex[:12])
        try:
            async for ing in self.ingestor.run(needs_decode=self._needs_decode):
                sha = ing.record.sha256
                if ing.record.status != "ok" or not sha or not self._needs_work(sha):
                    if ing.record.status == "ok" and sha:
                        self.note_done_before(sha)
                    self._count(ing, settled=True)
                    self._file_done(ing)
                    continue
                job_id = self._claim(ing, sha)
                if job_id is None:
                    continue
                writer.add({"job_id": job_id, "sha256": sha, "display": ing.display,
                            "source": os.fsencode(self.store.file_path(ing.file_id)), "store_id": store_id})
            writer.flush()
        finally:
            self.ingestor.close()
        self.planned = writer.total
        return writer.paths

    # -- distribute and ingest ----------------------------------------------------------------------

    def _pipeline(self, paths: list[str], folder: WorkFolder, store_id: str) -> Any:
        from imgtag.request.distributed import pacer_actor
        from imgtag.request.distributed.worker import AskSpec

        cfg, target = self.cfg, self.target
        assert self.provider is not None
        settings = dict(cfg.provider_settings)
        settings.setdefault("timeout", cfg.timeout)
        endpoint = getattr(self.provider, "base_url", None)
        name = pacer_actor.pacer_name(cfg.provider, endpoint, target.model.id)
        self.pacer = pacer_actor.get_or_create(name, cfg.concurrency, self.provider.declared_limits())
        self.prefix = PrefixMemory(self.store, self.key, self.provider, target.preset, target.model)
        warm_up = needs_warm_up(self.provider, target.preset, target.model, cache_warm=self.prefix.known_warm())
        if warm_up:  # one cache write for the whole cluster, not one per request the actors start together
            import ray

            ray.get(self.pacer.warm_up.remote(), timeout=30)
        self.memory = Memory(self.store, self.provider, self.key.provider)
        self.memory.seed(pacer_actor.PacerView(self.pacer))  # the pace an earlier run learned for this account
        prefixes = (*ENV_PREFIXES, f"{cfg.provider.upper()}_")
        spec = AskSpec(provider=cfg.provider, provider_settings=settings,
                       env=shareable_env(os.environ, prefixes),
                       settings=EngineSettings(key=self.key, preset=target.preset, model=target.model,
                                               max_attempts=cfg.max_attempts,
                                               images_per_request=pack_size(self.provider, cfg.images_per_request),
                                               validation_retries=1 if self.provider.reask_invalid else 0,
                                               shape_only=not self.provider.follows_schema),
                       pacer_name=name, work_uri=folder.uri, lease_name=pacer_actor.lease_name(store_id),
                       warm_up=warm_up)
        request = prepare_template(cfg, target, encode=True, provider_max_edge=max_edge_of(self.provider))
        return build_pipeline(folder, paths, self.planned, request, spec, ray_batch_size=cfg.ray_batch_size,
                              ray_actors=cfg.ray_actors)

    def _drain(self, ds: Any, folder: WorkFolder, store_id: str, progress: Progress) -> str | None:
        """Iterate the pipeline in a thread; ingest each finished batch's shard here (the store's thread)."""
        out: queue.Queue[Any] = queue.Queue()
        stop = threading.Event()

        def pump() -> None:
            try:
                for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                    out.put(batch)
                    if stop.is_set():
                        break
            except BaseException as exc:
                out.put(exc)
            finally:
                out.put(_DONE)

        thread = threading.Thread(target=pump, name="imgtag-ray-pump", daemon=True)
        thread.start()
        problem = None
        next_pace = 0.0
        ended = False
        try:
            while True:
                try:
                    item = out.get(timeout=0.2)
                except queue.Empty:
                    item = None
                if item is _DONE:
                    ended = True
                    break
                if isinstance(item, BaseException):
                    problem = f"the Ray pipeline stopped: {_one_line(item)}"
                    continue
                if item is not None:
                    for shard in sorted(set(item.column("shard").to_pylist())):
                        ingest_shard(self.store, folder, shard, self.run_id, store_id, self.tally)
                    self.returned += item.num_rows
                    self.finished += item.num_rows
                    self._tell_settled()
                    if self.tally.fatal is not None:
                        stop.set()
                if time.monotonic() >= next_pace:
                    next_pace = time.monotonic() + 2.0
                    self._refresh_pace()
                progress.tick()
        finally:
            stop.set()
            if not ended:
                # Interrupted, the pump is inside Ray Data's iterator, waiting for the next batch: it is stopped
                # there, so the iterator shuts its executor down (its threads and actors) while this process is
                # still connected. Left running, they used Ray after the connection closed, and Ray's core then
                # exited the process with status 1: no sentence, no cluster stopped (2 Ctrl-C in 8 at 12-18 s).
                _raise_in(thread, _Abandoned)
            thread.join(None if ended else ABANDON_WAIT_S)
        return problem

    def _refresh_pace(self) -> None:
        view = pacer_view(self.pacer)
        if view is not None:  # None: a slow actor must not stall the progress line
            self.cluster_in_flight = int(view["in_flight"])
            self.pace = str(view["pace"])

    # -- the run ------------------------------------------------------------------------------------

    async def execute(self, stream: TextIO | None = None) -> RunOutcome:
        from imgtag.request.distributed.cluster import ClusterProblem, RayMissing, connect
        from imgtag.request.distributed.pacer_actor import PacerView, take_lease

        cfg = self.cfg
        store_id = self.store.get_meta("ray_store_id")
        if store_id is None:
            store_id = uuid.uuid4().hex
            self.store.set_meta("ray_store_id", store_id)
        folder = WorkFolder(str(cfg.work_dir or self.store.out_dir / "ray-work"))
        folder.prepare()
        # Connect and take the store's lease before planning: a killed driver's workers (on a cluster that
        # outlives it) stop asking once its lease is gone, so they never race this run for the same jobs.
        try:
            # The CLI connected before it opened the store (nothing is created for a cluster that cannot be
            # used); this is that connection.
            conn = connect(cfg.ray_address, cfg.workers, log_dir=self.store.out_dir)
        except (ClusterProblem, RayMissing) as exc:
            return self._finish(str(exc), config_error=True)
        try:
            with _interruptible():
                lease = take_lease(store_id)
        except RuntimeError as exc:
            conn.close()
            return self._finish(str(exc))
        progress = Progress(self.snapshot, stream=stream, enabled=cfg.progress)
        problem = None
        try:
            # First what a killed driver left behind: those answers are paid for and must not be asked again.
            ingest_all(self.store, folder, self.run_id, store_id, self.tally)
            self._tell_settled(before_plan=True)
            ticker = asyncio.create_task(tick_forever(progress))
            try:
                paths = await self._plan(folder, store_id)
            finally:
                ticker.cancel()
            self.events.started(total_files=self.ingestor.counted if self.ingestor else None)
            if paths:
                # Blocking on purpose: the store's SQLite connection belongs to this thread.
                self.pace = "cluster pacer"
                with _interruptible():
                    try:
                        ds = self._pipeline(paths, folder, store_id)
                    except Exception as exc:  # one sentence, never a Ray traceback; the plan stays for the rerun
                        problem = f"the Ray pipeline could not start: {_one_line(exc)}"
                    else:
                        problem = self._drain(ds, folder, store_id, progress)
        finally:
            if self.memory is not None:
                with contextlib.suppress(Exception):  # remembering the pace must never cost the results
                    self.memory.save(PacerView(self.pacer))
            ray_kill(lease)
            progress.close()  # before the connection gives the terminal back to fd 2
            conn.close()
            ingest_all(self.store, folder, self.run_id, store_id, self.tally)  # shards whose summary never came
            if self.prefix is not None:
                with contextlib.suppress(Exception):  # as the pace: a hint for the next run, never worth a result
                    self.prefix.remember()
            self._tell_settled()
        return self._finish(problem)

    def _finish(self, problem: str | None, *, config_error: bool = False) -> RunOutcome:
        # The same ending as the local engine's Run.execute: summary, exports, exit code.
        cfg = self.cfg
        summary = summarize(self.store.db, self.key, run_id=self.run_id,
                            counted=self.ingestor.counted if self.ingestor else None)
        exports: list[Path] = []
        notes: list[str] = list(self.tally.problems)
        message = problem
        unwritten: list[str] = []
        try:
            exports = write_exports(self.store, self.store.get_meta("target"), cfg.formats, cfg.export_options, notes,
                                    unwritten, skip_unchanged=True)
        except ExportRefused as exc:
            exports = exc.written
            message = f"{exc} (results are saved; re-export with `imgtag export`)"
        pending = summary.by_status.get("pending", 0)
        if self.tally.fatal is not None:
            code, message = EXIT_CONFIG, f"{self.tally.fatal}: {pending} images left pending"
        elif message is not None and problem is None:
            code = EXIT_CONFIG
        elif summary.by_status.get("failed", 0) or pending or problem:
            code = EXIT_FAILED
        else:
            code = EXIT_OK
        if problem is not None:
            message = f"{problem}; everything answered is saved: run the same command to continue"
        if config_error:
            code, message = EXIT_CONFIG, problem
        not_written = not_written_message(unwritten)
        if not_written is not None:
            code = code or EXIT_FAILED
        if self.missing_args and summary.files == 0:
            code = EXIT_CONFIG  # nothing matched: a usage error, as with the local engine
        self.store.finish_run(self.run_id, code)
        self.emit_finished(summary, code, message or not_written)
        return RunOutcome(exit_code=code, summary=summary, message=message, exports=exports, export_notes=notes,
                          not_written=not_written,
                          requests=summary.requests, done_before=self.done_before,
                          spent_to_date_usd=self.store.spent(self.key))


def _raise_in(thread: threading.Thread, kind: type[BaseException]) -> None:
    """Raise `kind` in `thread` at its next Python instruction (CPython; elsewhere the thread is left to finish)."""
    if thread.ident is None or not thread.is_alive():
        return
    try:
        import ctypes

        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(kind))
    except (ImportError, AttributeError):
        return


def _interruptible() -> contextlib.AbstractContextManager[None]:
    """Ctrl-C (and SIGTERM, which the CLI hands to the SIGINT handler) raise KeyboardInterrupt at once while the run
    blocks the event loop in Ray calls: waiting for the lease, starting the pipeline, draining it. The handlers in
    place act through the loop (asyncio's cancels the main task, which takes effect at its next await; the CLI's
    graceful first stop is a callback on the loop), so they acted only after all of that: a Ctrl-C mid-run was
    answered once every image was done, then with a traceback, and a SIGTERM waited as long. A Ray run has no
    graceful stop yet: the answers its workers wrote to shards are kept (this run's end or the next run ingests
    them), those still in flight are asked again. The handler in place is put back after; an ignored or default
    SIGINT is left as it is."""
    return interrupt_raises_here(lambda handler: callable(handler) and handler is not signal.default_int_handler)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
