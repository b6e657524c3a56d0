"""imgtag's Python API (docs/python-api.md): the functions `imgtag run`, `scan` and friends are made of, typed.

    import imgtag
    result = imgtag.tag("photos/", preset="keywords")      # the same engine, store, resume and exports as `run`
    for row in imgtag.results(result.out): ...              # the results contract, as typed objects
    imgtag.estimate("photos/").cost_usd                      # what `scan` prints, as data
    imgtag.describe("photo.jpg")                             # one image's validated fields

Settings not given come from the environment and imgtag.toml exactly as on the command line (app/settings.py).
Problems a person must fix raise `imgtag.ImgtagError` (one sentence). The blocking functions also work inside a
running event loop (a Jupyter notebook): the work then runs in a thread of its own, since one event loop cannot
run inside another; `atag` and `adescribe` do the same without blocking the caller's loop. A KeyboardInterrupt
(a notebook's interrupt) stops the run as `imgtag run`'s Ctrl-C does, and cancelling `atag` or `adescribe` aborts
it: neither leaves it running in its thread (`_Control`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from imgtag.config.errors import ProviderError, UsageError
from imgtag.config.exits import EXIT_CONFIG

if TYPE_CHECKING:
    from imgtag.app.run import RunSession
    from imgtag.config.runconfig import RunConfig
    from imgtag.review_session import ReviewSession

__all__ = ["Estimate", "EventHandler", "Exported", "ModelCost", "Result", "RunResult", "Stopper", "adescribe", "atag",
           "describe", "estimate", "export_files", "folder_status", "open_review", "results", "retry_failed", "tag"]

PathLike = str | os.PathLike[str]
Paths = PathLike | Iterable[PathLike]
EventHandler = Callable[[Mapping[str, object]], None]
"""Receives each event of a run (docs/events.md) as a mapping with "v" and "type"."""

_T = TypeVar("_T")
_INTERRUPTED = 130  # the exit code `imgtag run` gives after Ctrl-C
_log = logging.getLogger("imgtag")


# -- result types ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunResult:
    """What a run did: the same figures `imgtag run` prints at the end, and the exit code it would give."""

    out: Path
    """The output folder: imgtag.db and the exports."""
    exit_code: int
    """0 all done, 1 finished with failures or images left pending, 2 stopped (a key, a model, the provider)."""
    files: int
    by_status: Mapping[str, int]
    """Files by status: ok, failed, skipped, pending."""
    by_error: Mapping[str, int]
    """Failed and skipped files by cause (refused, too_small, ...)."""
    requests: int
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    cost_usd: float | None
    """This run's cost; None when some tokens were paid at prices nobody gave (never a made-up 0)."""
    message: str | None = None
    """Why the run stopped early, or what it left to do (a budget reached, batches still running)."""
    written: tuple[Path, ...] = ()
    """The files the exports wrote."""
    missing: tuple[str, ...] = ()
    """Inputs that matched no file."""
    done_before: int = 0
    """Files an earlier run had already answered (resume)."""
    interrupted: bool = False
    """The run was stopped (`Stopper.stop`) before it was done: `exit_code` is 130, `message` says what the stop
    waited for, the images not answered are pending, and the exports were not rewritten (`export_files` does it)."""

    @property
    def ok(self) -> int:
        return self.by_status.get("ok", 0)

    @property
    def failed(self) -> int:
        return self.by_status.get("failed", 0)

    @property
    def skipped(self) -> int:
        return self.by_status.get("skipped", 0)

    @property
    def pending(self) -> int:
        return self.by_status.get("pending", 0)


@dataclass(frozen=True)
class Result:
    """One image's row of the results contract (docs/results.md): current values, a person's edits included."""

    path: str
    """Relative to the folder's base (where the inputs were)."""
    status: str
    """ok, failed, skipped or pending."""
    fields: Mapping[str, Any] | None
    """The preset's validated fields (None unless ok)."""
    error: Mapping[str, Any] | None
    """{"type": ..., "message": ...} for a failed or skipped image."""
    model: str | None
    preset: str | None
    preset_version: str | None
    provider: str | None
    usage: Mapping[str, Any] | None
    cost_usd: float | None
    sha256: str | None = None
    duplicate_of: str | None = None
    mode: str | None = None
    source_path: str | None = None
    """The original's absolute path."""
    reviewed: bool = False
    edited_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelCost:
    """One model's estimate for the images a scan found (prompt caching included)."""

    model: str
    images: int
    input_tokens: int | None
    """None: this model's image tokens are unknown."""
    output_tokens: int
    cost_usd: float | None
    """Asked one request at a time (sync); None when its prices are unknown."""
    batch_cost_usd: float | None
    """Asked through a batch API."""


@dataclass(frozen=True)
class Estimate:
    """What `imgtag scan` prints, as data: the files found and what tagging them would cost, offline."""

    files: int
    by_status: Mapping[str, int]
    by_reason: Mapping[str, int]
    """Files skipped or failed by cause (too_small, corrupt, ...)."""
    distinct_images: int
    """What a run would ask about: readable, and not an exact copy of another."""
    preset: str
    preset_version: str
    model: str
    """The model chosen (the default, or `model=`)."""
    models: tuple[ModelCost, ...] = ()
    """The chosen model, and for Anthropic every catalogue model beside it."""
    missing: tuple[str, ...] = ()

    @property
    def selected(self) -> ModelCost | None:
        return next((m for m in self.models if m.model == self.model), None)

    @property
    def cost_usd(self) -> float | None:
        chosen = self.selected
        return chosen.cost_usd if chosen is not None else None

    @property
    def batch_cost_usd(self) -> float | None:
        chosen = self.selected
        return chosen.batch_cost_usd if chosen is not None else None


# -- stopping a run -------------------------------------------------------------------------------

class Stopper:
    """Stops a run of `tag`, `atag` or `retry_failed` (given as `stop=`) gracefully, from any thread: a notebook's
    other cell, a button's callback, a timer. The run sends nothing new, waits at most `grace_s` for the answers
    already asked for (they are paid for either way) and stores them, then returns a RunResult with
    `interrupted` set. With nothing on its way yet, it stops at once. What `imgtag run` does at its first Ctrl-C."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._grace_s: float | None = None
        self._runs: list[_Control] = []

    @property
    def requested(self) -> bool:
        """Whether `stop` was called."""
        return self._grace_s is not None

    def stop(self, grace_s: float = 30.0) -> None:
        """Ask the run to stop (before it starts too: it then stops at once). Returns at once; the call that runs
        it returns when the stop is done. A second call changes nothing."""
        with self._lock:
            if self._grace_s is not None:
                return
            self._grace_s = grace_s
            runs = list(self._runs)
        for run in runs:
            run.stop(grace_s)

    def _attach(self, run: _Control) -> None:
        with self._lock:
            self._runs.append(run)
            grace_s = self._grace_s
        if grace_s is not None:
            run.stop(grace_s)

    def _detach(self, run: _Control) -> None:
        with self._lock:
            self._runs.remove(run)


class _Control:
    """One call's run as the threads around it reach it: stopped gracefully (a Stopper, the first Ctrl-C or
    notebook interrupt) or aborted (a cancelled `atag`/`adescribe`, the second interrupt), from any thread.

    Why a cancel aborts rather than waits for the answers on their way: a task is cancelled by a timeout
    (asyncio.wait_for, asyncio.timeout) or a TaskGroup whose other task failed, and both wait for the cancelled
    task to end; waiting up to 30 s there would break the caller's own bound. What the abort drops (at most the
    requests in flight) stays pending; a Stopper is the graceful way."""

    def __init__(self, stopper: Stopper | None = None) -> None:
        self._lock = threading.Lock()
        self._stopper = stopper
        self.grace_s: float | None = None
        self.aborted = False
        self.interrupted = False  # by a KeyboardInterrupt: the caller gets one when the run has ended
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: RunSession | None = None
        self._task: asyncio.Task[Any] | None = None

    def stop(self, grace_s: float) -> None:
        """Stop gracefully (waiting at most `grace_s` for the answers on their way); from any thread."""
        with self._lock:
            if self.grace_s is not None or self.aborted:
                return
            self.grace_s = grace_s
            loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has just closed: the run is over
                loop.call_soon_threadsafe(self._apply)

    def interrupt(self) -> None:
        """A KeyboardInterrupt came while the caller waited: stop gracefully, as the CLI's first Ctrl-C."""
        from imgtag.app.stopping import GRACE_S

        self.interrupted = True
        self.stop(GRACE_S)

    def abort(self) -> None:
        """Stop now: nothing new is sent, the requests in flight are dropped (their images stay pending)."""
        with self._lock:
            if self.aborted:
                return
            self.aborted = True
            loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)

    async def watch(self, session: RunSession) -> Any:
        """`session.run()` on this loop, stoppable and abortable from now on; in the main thread, its first Ctrl-C
        is a graceful stop (app/stopping.py), as in `imgtag run`."""
        from imgtag.app.stopping import graceful_first_interrupt

        if self._stopper is not None:
            self._stopper._attach(self)
        try:
            with self._lock:
                self._loop, self._session = asyncio.get_running_loop(), session
                self._task = asyncio.current_task()
                aborted, early = self.aborted, self.grace_s is not None
            if aborted:
                raise asyncio.CancelledError
            if early:
                self._apply()
            with graceful_first_interrupt(self._on_interrupt):
                return await session.run()
        finally:
            with self._lock:
                self._loop = self._session = self._task = None
            if self._stopper is not None:
                self._stopper._detach(self)

    def _apply(self) -> None:
        """The graceful stop, on the run's loop."""
        session, task, grace_s = self._session, self._task, self.grace_s
        if session is None or task is None or grace_s is None or self.aborted:
            return  # the run is over, or is being aborted
        report = session.stop(grace_s)
        if report is None:  # nothing on its way to wait for: stop now
            task.cancel()
        elif self.interrupted:
            self._say_stopping(report)

    def _on_interrupt(self) -> bool:
        """The first Ctrl-C of a run in the main thread, on its loop: a graceful stop, said at once. False when
        nothing is on its way: asyncio.run's own answer then cancels the run and raises KeyboardInterrupt."""
        from imgtag.app.stopping import GRACE_S

        self.interrupted = True
        with self._lock:
            self.grace_s = GRACE_S if self.grace_s is None else self.grace_s
            session = self._session
        report = session.stop(self.grace_s) if session is not None else None
        if report is None:
            return False
        self._say_stopping(report)
        return True

    @staticmethod
    def _say_stopping(report: Any) -> None:
        from imgtag.app.messages import stopping_message

        _say(stopping_message(report, "interrupt again"))


# -- running where the caller is -----------------------------------------------------------------

def _blocking(work: Callable[[_Control], _T], stop: Stopper | None = None) -> _T:
    """`work()` here, or in a thread of its own when this thread already runs an event loop (Jupyter), where
    asyncio.run cannot start another. Waiting for that thread, a KeyboardInterrupt (a notebook's interrupt) stops
    the run gracefully, a second one aborts it; the call then raises KeyboardInterrupt once the run has ended
    (its store closed, its answers stored)."""
    control = _Control(stop)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return work(control)
    done, thread = _start(work, control)
    interrupts = 0
    with _interrupts_raised():
        while not done.done():
            try:
                concurrent.futures.wait([done])
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts == 1:
                    control.interrupt()
                else:
                    control.abort()
    thread.join()
    if interrupts:
        _retrieved(done)
        raise KeyboardInterrupt
    return done.result()


def _interrupts_raised() -> contextlib.AbstractContextManager[None]:
    """Ctrl-C raises KeyboardInterrupt here meanwhile when the loop this thread runs is asyncio.run's: its handler
    would only cancel the task that waits in `_blocking`, which cannot notice until the run is over. A notebook's
    kernel raises it already; a handler of the caller's own is left alone."""
    from imgtag.app.stopping import interrupt_raises_here

    def asyncio_runners(handler: Any) -> bool:
        runner = getattr(getattr(handler, "func", None), "__self__", None)  # partial(runner._on_sigint, ...)
        runner_class = getattr(asyncio, "Runner", None)  # Python 3.11: before it, asyncio.run left SIGINT alone
        return runner_class is not None and isinstance(runner, runner_class)

    return interrupt_raises_here(asyncio_runners)


async def _in_thread(work: Callable[[_Control], _T], stop: Stopper | None = None) -> _T:
    """`work()` in a thread of its own, leaving the caller's loop free. Cancelling the awaiting task aborts the
    run (see _Control); the CancelledError reaches the caller once the thread has ended (its store closed)."""
    loop = asyncio.get_running_loop()
    control = _Control(stop)
    ended = asyncio.Event()

    def wake(_: object) -> None:
        with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody waits
            loop.call_soon_threadsafe(ended.set)

    done, thread = _start(work, control, wake)
    try:
        await ended.wait()
    except asyncio.CancelledError:
        control.abort()
        while not done.done():
            with contextlib.suppress(asyncio.CancelledError):  # cancelled again: the abort is under way already
                await ended.wait()
        thread.join()
        _retrieved(done)
        raise
    thread.join()
    return done.result()


def _start(work: Callable[[_Control], _T], control: _Control,
           wake: Callable[[object], None] | None = None) -> tuple[concurrent.futures.Future[_T], threading.Thread]:
    """`work(control)` started in a thread named imgtag-run, in a copy of the caller's context."""
    done: concurrent.futures.Future[_T] = concurrent.futures.Future()
    if wake is not None:
        done.add_done_callback(wake)
    context = contextvars.copy_context()

    def target() -> None:
        try:
            result = context.run(work, control)
        except BaseException as error:  # handed to the caller's thread, KeyboardInterrupt and cancel included
            done.set_exception(error)
        else:
            done.set_result(result)

    thread = threading.Thread(target=target, name="imgtag-run")
    thread.start()
    return done, thread


def _retrieved(done: concurrent.futures.Future[Any]) -> None:
    """The run's own end after an interrupt or a cancel, which is what the caller sees; an error the run ended
    with meanwhile is logged, not lost."""
    error = done.exception()
    if isinstance(error, Exception):
        _log.warning("the run ended with %s: %s", type(error).__name__, error)


def _stop_helpers_at_exit() -> None:
    """The decode pool's helpers stop when the interpreter does, as they do when the CLI exits."""
    import atexit

    from imgtag.ingest.lifeline import stop_helpers

    atexit.unregister(stop_helpers)
    atexit.register(stop_helpers)


def _inputs(paths: Paths) -> list[str]:
    if isinstance(paths, str | os.PathLike):
        return [os.fspath(paths)]
    return [os.fspath(p) for p in paths]


def _say(line: str) -> None:
    _log.warning(line)


# -- tag -------------------------------------------------------------------------------------------

def tag(paths: Paths, *, out: PathLike | None = None, preset: str | None = None, model: str | None = None,
        provider: str | None = None, lang: str | None = None, categories: str | Iterable[str] | None = None,
        mode: str | None = None, budget: float | None = None, formats: str | Iterable[str] | None = None,
        on_event: EventHandler | None = None, progress: bool = False, config_file: PathLike | None = None,
        stop: Stopper | None = None, **options: Any) -> RunResult:
    """Tag and describe images: `imgtag run` as a function. Resumable like it: the same call again continues,
    and nothing answered is asked twice. `stop`: a Stopper that can end the run gracefully from another thread.

    `paths`: files, folders, globs or @list files. Unset settings come from IMGTAG_* variables, then
    imgtag.toml (`config_file`, default ./imgtag.toml), then the defaults (out "imgtag-out", preset "ecommerce",
    provider "anthropic", mode "sync", formats "csv,jsonl"). `options` are `run`'s other flags by their Python
    names (concurrency=, base_url=, images_per_request=, dry_run=, ...). `on_event` receives each event of
    the run. Raises ImgtagError before anything is created or paid for when a setting cannot work."""
    _known_options("tag", options)
    return _blocking(lambda control: _tag(_inputs(paths), out=out, preset=preset, model=model, provider=provider,
                                          lang=lang, categories=categories, mode=mode, budget=budget,
                                          formats=formats, on_event=on_event, progress=progress,
                                          config_file=config_file, control=control, options=options), stop)


async def atag(paths: Paths, *, out: PathLike | None = None, preset: str | None = None, model: str | None = None,
               provider: str | None = None, lang: str | None = None, categories: str | Iterable[str] | None = None,
               mode: str | None = None, budget: float | None = None, formats: str | Iterable[str] | None = None,
               on_event: EventHandler | None = None, progress: bool = False, config_file: PathLike | None = None,
               stop: Stopper | None = None, **options: Any) -> RunResult:
    """`tag` without blocking the running event loop (the run works in a thread of its own; `on_event` is
    called from that thread). Cancelling the awaiting task aborts the run (the answers in flight are dropped,
    their images pending) and raises CancelledError once its thread has ended; `stop` stops it gracefully."""
    _known_options("atag", options)
    inputs = _inputs(paths)
    return await _in_thread(lambda control: _tag(inputs, out=out, preset=preset, model=model, provider=provider,
                                                 lang=lang, categories=categories, mode=mode, budget=budget,
                                                 formats=formats, on_event=on_event, progress=progress,
                                                 config_file=config_file, control=control, options=options), stop)


def _known_options(function: str, options: dict[str, Any]) -> None:
    """A misspelt option fails as Python's own would, naming the function called (not the internal run_config) and
    the option it resembles."""
    if not options:
        return
    import inspect

    from imgtag.app.run import run_config
    from imgtag.config.tomlfile import did_you_mean

    known = [name for name, p in inspect.signature(run_config).parameters.items() if p.kind is p.KEYWORD_ONLY]
    for name in options:
        if name not in known:
            raise TypeError(f"{function}() got an unexpected keyword argument {name!r}{did_you_mean(name, known)}")


def _tag(inputs: list[str], *, out: PathLike | None, preset: str | None, model: str | None, provider: str | None,
         lang: str | None, categories: str | Iterable[str] | None, mode: str | None, budget: float | None,
         formats: str | Iterable[str] | None, on_event: EventHandler | None, progress: bool,
         config_file: PathLike | None, control: _Control, options: dict[str, Any]) -> RunResult:
    from imgtag.app.run import run_config
    from imgtag.app.settings import Settings

    settings = Settings.load(config_file)
    cfg = run_config(inputs, settings, out=out, preset=preset, model=model, provider=provider, lang=lang,
                     categories=_categories(categories), mode=mode, budget=budget,
                     formats=formats if formats is None or isinstance(formats, str) else list(formats),
                     on_event=on_event, progress=progress, **options)
    return _run(cfg, "run", control)


def _run(cfg: RunConfig, command: str, control: _Control) -> RunResult:
    from imgtag.app.run import RunSession, prepare
    from imgtag.app.stopping import RunStopped

    prepared = prepare(cfg)
    _stop_helpers_at_exit()
    with RunSession(prepared, command, _say) as session:
        try:
            outcome = asyncio.run(control.watch(session))
        except KeyboardInterrupt:  # asyncio.run's answer to a Ctrl-C in the main thread: the second, or the first
            _log.warning(session.interrupted(_INTERRUPTED))  # with nothing on its way
            raise
        except (RunStopped, asyncio.CancelledError):
            message = session.interrupted(_INTERRUPTED)  # the run row: interrupted, as the CLI's
            if control.interrupted:  # the first Ctrl-C stopped it gracefully: the caller expects the interrupt
                _log.warning(message)
                raise KeyboardInterrupt from None
            if control.aborted or control.grace_s is None:
                raise
            s = session.summary()
            return RunResult(
                out=Path(cfg.out), exit_code=_INTERRUPTED, files=s.files, by_status=dict(s.by_status),
                by_error=dict(s.by_error), requests=s.requests, input_tokens=s.input_tokens,
                output_tokens=s.output_tokens, cache_creation_input_tokens=s.cache_creation_input_tokens,
                cache_read_input_tokens=s.cache_read_input_tokens, cost_usd=_dollars(s.cost_usd), message=message,
                missing=tuple(session.missing_args), done_before=session.done_before, interrupted=True)
    s = outcome.summary
    missing = tuple(session.missing_args)
    return RunResult(
        out=Path(cfg.out), exit_code=EXIT_CONFIG if missing and s.files == 0 else outcome.exit_code, files=s.files,
        by_status=dict(s.by_status), by_error=dict(s.by_error), requests=s.requests, input_tokens=s.input_tokens,
        output_tokens=s.output_tokens, cache_creation_input_tokens=s.cache_creation_input_tokens,
        cache_read_input_tokens=s.cache_read_input_tokens, cost_usd=_dollars(s.cost_usd),
        message=outcome.message or outcome.not_written, written=tuple(outcome.exports), missing=missing,
        done_before=outcome.done_before)


def _dollars(amount: float | None) -> float | None:
    """Dollars to a tenth of a nano-dollar: sums and products of prices carry float noise (0.00033197500000000003),
    which a user printing a result should not see. None (prices unknown) stays None."""
    return None if amount is None else round(amount, 10)


def _categories(categories: str | Iterable[str] | None) -> str | list[str] | None:
    return categories if categories is None or isinstance(categories, str) else [str(c) for c in categories]


# -- results -----------------------------------------------------------------------------------------

def results(out: PathLike | None = None, *, preset: str | None = None, model: str | None = None,
            lang: str | None = None, every: bool = False, config_file: PathLike | None = None) -> Iterator[Result]:
    """The rows of the results contract for one target of a folder (the latest, or the one `preset`, `model`
    and `lang` name): the latest run's inputs, or with `every` each file the folder has seen. Streams; the
    folder's store stays open until the iteration ends. UsageError when the folder holds no results."""
    from imgtag.app.folder import result_rows
    from imgtag.app.settings import Settings

    folder = Settings.load(config_file).out(out)
    for row in result_rows(folder, preset=preset, model=model, lang=lang, every=every):
        yield Result(path=row.path, status=row.status, fields=row.fields, error=row.error, model=row.model,
                     preset=row.preset, preset_version=row.preset_version, provider=row.provider, usage=row.usage,
                     cost_usd=_dollars(row.cost_usd), sha256=row.sha256, duplicate_of=row.duplicate_of, mode=row.mode,
                     source_path=row.source_path, reviewed=row.reviewed, edited_fields=tuple(row.edited_fields))


# -- status, export, retry -----------------------------------------------------------------------------

def folder_status(out: PathLike | None = None, *, preset: str | None = None, model: str | None = None,
                  lang: str | None = None, base_url: str | None = None,
                  config_file: PathLike | None = None) -> dict[str, Any]:
    """`imgtag status --json`'s object for one target of a folder: counts, failures with their causes, tokens and
    spend to date, and live batch states (asked of the provider when its key is set). Not named `status`:
    `imgtag.app.status` is the module that gathers it."""
    from imgtag.app.folder import status_report
    from imgtag.app.settings import Settings

    settings = Settings.load(config_file)
    return _blocking(lambda _: status_report(settings.out(out), settings, preset=preset, model=model, lang=lang,
                                           base_url=base_url))


@dataclass(frozen=True)
class Exported:
    """What `export` wrote."""

    written: tuple[Path, ...]
    notes: tuple[str, ...]
    """One-line summaries of the per-image formats (sidecars, captions)."""
    not_written: str | None
    """The files a per-image format could not write, named (`imgtag export` exits 1 for them)."""


def export_files(out: PathLike | None = None, *, formats: str | Iterable[str] | None = None, preset: str | None = None,
           model: str | None = None, lang: str | None = None, every: bool = False, reviewed_only: bool = False,
           config_file: PathLike | None = None, **options: Any) -> Exported:
    """`imgtag export`: rebuild one target's files from the store (atomically, asking no model). `options` are
    `export`'s other flags by their Python names (txt_template=, xmp_name=, xlsx_thumbnails=, ...). An output
    file in the way (a user's own metadata.jsonl) raises UsageError after writing everything else. Not named
    `export`: `imgtag.export` is the exporters' package."""
    from imgtag.app.folder import export as export_folder
    from imgtag.app.settings import Settings

    folder = Settings.load(config_file).out(out)
    chosen = formats if formats is None or isinstance(formats, str) else ",".join(formats)
    done = export_folder(folder, formats=chosen, preset=preset, model=model, lang=lang, every=every,
                         reviewed_only=reviewed_only, **options)
    return Exported(tuple(done.written), tuple(done.notes), done.not_written)


def retry_failed(out: PathLike | None = None, *, force: bool = False, base_url: str | None = None,
          budget: float | None = None, concurrency: int | None = None, on_event: EventHandler | None = None,
          progress: bool = False, config_file: PathLike | None = None, stop: Stopper | None = None
          ) -> RunResult | None:
    """`imgtag retry`: ask the latest target's failures again when a new ask can fix them (all of them with
    `force`), against the server the target used unless `base_url` names another. None when there is nothing
    to retry. `stop`: as for `tag`."""
    from imgtag.app.retry import plan_retry
    from imgtag.app.settings import Settings

    def work(control: _Control) -> RunResult | None:
        plan = plan_retry(out, Settings.load(config_file), force=force, progress=progress, base_url=base_url,
                          budget=budget, concurrency=concurrency, on_event=on_event)
        return None if plan.cfg is None else _run(plan.cfg, "retry", control)

    return _blocking(work, stop)


# -- review ------------------------------------------------------------------------------------------

def open_review(out: PathLike | None = None, *, preset: str | None = None, model: str | None = None,
                lang: str | None = None, config_file: PathLike | None = None) -> ReviewSession:
    """One target of a folder (the latest, or the one `preset`, `model` and `lang` name) open for review: read,
    edit, approve, bulk-change and undo as `imgtag review`'s page does (docs/review.md); edits are stored as
    versions beside the model's answers and reach every export. Use it in a `with` block. UsageError when the
    folder holds no results."""
    from imgtag.app.folder import review_target
    from imgtag.app.settings import Settings
    from imgtag.review_session import ReviewSession

    folder = Settings.load(config_file).out(out)
    meta, service = review_target(folder, preset=preset, model=model, lang=lang)
    return ReviewSession(folder, meta, service)


# -- estimate ----------------------------------------------------------------------------------------

def estimate(paths: Paths, *, model: str | None = None, preset: str | None = None, provider: str | None = None,
             lang: str | None = None, detail: str | None = None, max_edge: int | None = None, min_side: int = 200,
             max_megapixels: float = 100.0, workers: int | None = None, images_per_request: int = 1,
             out: PathLike | None = None, base_url: str | None = None,
             config_file: PathLike | None = None) -> Estimate:
    """`imgtag scan` as a function: every file discovered, prefiltered and sized exactly as a run would, and the
    cost of tagging them estimated, offline (spends nothing)."""
    return _blocking(lambda _: _estimate(_inputs(paths), model=model, preset=preset, provider=provider, lang=lang,
                                       detail=detail, max_edge=max_edge, min_side=min_side,
                                       max_megapixels=max_megapixels, workers=workers,
                                       images_per_request=images_per_request, out=out, base_url=base_url,
                                       config_file=config_file))


def _estimate(inputs: list[str], *, model: str | None, preset: str | None, provider: str | None, lang: str | None,
              detail: str | None, max_edge: int | None, min_side: int, max_megapixels: float, workers: int | None,
              images_per_request: int, out: PathLike | None, base_url: str | None,
              config_file: PathLike | None) -> Estimate:
    from imgtag.app.scan import ScanSession
    from imgtag.app.settings import Settings

    settings = Settings.load(config_file)
    _stop_helpers_at_exit()
    with ScanSession(inputs, settings, out=out, model=model, provider=provider, preset=preset, lang=lang,
                     detail=detail, max_edge=max_edge, min_side=min_side, max_megapixels=max_megapixels,
                     workers=workers, images_per_request=images_per_request, base_url=base_url) as session:
        _, summary = asyncio.run(session.run(lambda entry: None, _say))
    return Estimate(
        files=summary["files"], by_status=dict(summary["by_status"]), by_reason=dict(summary["by_reason"]),
        distinct_images=summary["distinct_images"], preset=summary["preset"],
        preset_version=summary["preset_version"], model=summary["selected_model"],
        models=tuple(ModelCost(model=e["model"], images=e["images"], input_tokens=e["input_tokens"],
                               output_tokens=e["output_tokens"], cost_usd=_dollars(e["standard_usd"]),
                               batch_cost_usd=_dollars(e["batch_usd"])) for e in summary["estimates"]),
        missing=tuple(summary["missing"]))


# -- describe ----------------------------------------------------------------------------------------

def describe(image: PathLike | bytes | Any, *, preset: str | None = "keywords", model: str | None = None,
             provider: str | None = None, lang: str | None = None, categories: str | Iterable[str] | None = None,
             config_file: PathLike | None = None, **options: Any) -> dict[str, Any]:
    """One image (a path, its bytes, or a PIL image) asked and judged exactly as a run would, keeping nothing:
    its validated fields. A failed answer (refused, invalid, truncated, a provider error) raises ProviderError,
    an image that cannot be used (unreadable, a bomb) UsageError. `options` are `run`'s other flags."""
    _known_options("describe", options)
    return _blocking(lambda control: _describe(image, preset=preset, model=model, provider=provider, lang=lang,
                                               categories=categories, config_file=config_file, control=control,
                                               options=options))


async def adescribe(image: PathLike | bytes | Any, *, preset: str | None = "keywords", model: str | None = None,
                    provider: str | None = None, lang: str | None = None,
                    categories: str | Iterable[str] | None = None, config_file: PathLike | None = None,
                    **options: Any) -> dict[str, Any]:
    """`describe` without blocking the running event loop. Cancelling the awaiting task stops the request (the
    CancelledError comes once its thread has ended)."""
    _known_options("adescribe", options)
    return await _in_thread(lambda control: _describe(image, preset=preset, model=model, provider=provider,
                                                      lang=lang, categories=categories, config_file=config_file,
                                                      control=control, options=options))


def _describe(image: PathLike | bytes | Any, *, preset: str | None, model: str | None, provider: str | None,
              lang: str | None, categories: str | Iterable[str] | None, config_file: PathLike | None,
              control: _Control, options: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="imgtag-describe-") as work:
        source = _image_file(image, Path(work))
        # A run into a folder that is removed afterwards: the engine's retries, validation and repairs, as in
        # `imgtag run`, with nothing kept. One image the caller chose is never skipped for being small.
        run = _tag([source], out=Path(work) / "out", preset=preset, model=model, provider=provider, lang=lang,
                   categories=categories, mode="sync", budget=None, formats="jsonl", on_event=None, progress=False,
                   config_file=config_file, control=control, options={"min_side": 0, **options})
        row = next(results(run.out, config_file=config_file), None)
    if row is not None and row.status == "ok" and row.fields is not None:
        return dict(row.fields)
    error = (row.error if row is not None else None) or {}
    reason = f"{error.get('type', 'error')}: {error.get('message', '')}".rstrip(": ")
    if row is not None and (row.status == "skipped" or (row.mode is None and error.get("type") in _FILE_CAUSES)):
        # the file itself failed (nothing was asked): the caller's image to fix, not the provider's answer
        label = os.fspath(image) if isinstance(image, str | os.PathLike) else "the image"
        raise UsageError(f"{label} cannot be used: {error.get('message') or reason}")
    raise ProviderError(f"no usable answer for the image ({run.message or reason or 'no answer'})")


# Why a file fails before anything is asked (ingest/preprocess.py); its message already names the cause.
_FILE_CAUSES = frozenset({"empty", "not_image", "unsupported", "truncated", "corrupt", "bomb", "unreadable",
                          "not_regular"})


def _image_file(image: PathLike | bytes | Any, folder: Path) -> str:
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        if not path.is_file():
            raise UsageError(f"{os.fspath(image)}: no such image file")
        return str(path)
    target = folder / "image"
    if isinstance(image, bytes | bytearray | memoryview):
        target.write_bytes(bytes(image))
    elif hasattr(image, "save"):  # a PIL image: saved losslessly, as it is
        image.save(target, format="PNG")
    else:
        raise TypeError(f"describe() takes a path, bytes or a PIL image, not {type(image).__name__}")
    return str(target)

