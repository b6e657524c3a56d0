"""`run` (and `retry`) as functions: settings -> a checked RunConfig -> a prepared run -> a RunOutcome.

Every check happens before anything is created or paid for, in the order the CLI always made them (flags, then
the target, then the folder and the provider), and each problem is one ImgtagError sentence. What the CLI prints
while a run works (a model-check warning, a target switch, where Ray logs go) reaches the caller through `say`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from imgtag.app.settings import DEFAULT_CONCURRENCY, DEFAULT_FORMATS, DEFAULT_PRESET, DEFAULT_PROVIDER, Settings
from imgtag.app.stopping import GRACE_S
from imgtag.config.errors import BudgetError, ProviderError, UsageError
from imgtag.config.options import option

if TYPE_CHECKING:  # imported where used: configuration errors must not pay for them (bench/startup.py)
    from imgtag.app.runner import Run, RunOutcome
    from imgtag.app.summary import Summary
    from imgtag.config.runconfig import RunConfig, Target
    from imgtag.request.engine import StopReport
    from imgtag.store import Store

Say = Callable[[str], None]
EventHandler = Callable[[Mapping[str, object]], None]


def _quiet(line: str) -> None:
    """The default `say`: a caller that wants the lines passes its own."""


def run_config(paths: Sequence[str], settings: Settings, *, out: str | os.PathLike[str] | None = None,
               preset: str | None = None, provider: str | None = None, base_url: str | None = None,
               model: str | None = None, mode: str | None = None, lang: str | None = None,
               categories: str | Sequence[str] | None = None,
               formats: str | Sequence[str] | None = None, txt_template: str | None = None,
               txt_existing: str | None = None, metadata_overwrite: bool = False, xmp_name: str | None = None,
               xmp_touch: bool = False, xmp_overwrite_text: bool = False, xlsx_thumbnails: bool | None = None,
               dry_run: bool = False, budget: float | None = None, price_in: float | None = None,
               price_out: float | None = None, concurrency: int | None = None, workers: int | None = None,
               detail: str | None = None, max_edge: int | None = None, min_side: int = 200,
               max_megapixels: float = 100.0, skip_near_duplicates: bool = False, timeout: float = 120.0,
               max_attempts: int = 6, detach: bool = False, batch_max_requests: int = 100_000,
               batch_max_mb: float = 100.0, poll_interval: float = 5.0, images_per_request: int = 1,
               progress: bool = True, engine: str = "local", ray_address: str | None = None,
               work_dir: str | None = None, ray_actors: int = 2, ray_batch_size: int = 16,
               on_event: EventHandler | None = None, stdin: TextIO | None = None, prompt: str | None = None,
               fields: Sequence[str] | None = None) -> RunConfig:
    """The run's settings, checked: flags out of range, combinations that mean nothing and unknown export options
    are one UsageError each, before anything is created."""
    mode = settings.pick(mode, "mode", "sync")
    format_list = settings.pick(_joined(formats), "formats", DEFAULT_FORMATS)
    budget_source = settings.source(budget, "budget", option("budget"))
    budget = settings.pick(budget, "budget")
    concurrency = settings.pick(concurrency, "concurrency", DEFAULT_CONCURRENCY)
    if mode not in ("sync", "batch"):
        raise UsageError(f"{option('mode')} must be sync or batch, not {mode!r}")
    from imgtag.app.flagcheck import detach_problem, number_problem

    if problem := number_problem({
            "concurrency": concurrency, "workers": workers, "timeout": timeout, "max_attempts": max_attempts,
            "budget": budget, "price_in": price_in, "price_out": price_out, "min_side": min_side,
            "max_megapixels": max_megapixels, "batch_max_requests": batch_max_requests,
            "batch_max_mb": batch_max_mb, "poll_interval": poll_interval, "ray_actors": ray_actors,
            "ray_batch_size": ray_batch_size}) or detach_problem(detach, mode):
        raise UsageError(problem)
    from imgtag.request.pack_limits import check_images_per_request

    if (problem := check_images_per_request(images_per_request)) is not None:
        raise UsageError(problem)
    from imgtag.request.distributed.cluster import usage_problem

    if problem := usage_problem(engine, mode, budget, ray_actors, ray_batch_size):
        raise UsageError(problem)
    from imgtag.app.export_options import export_options, xlsx_options, xmp_options

    chosen_exports = {**xmp_options(format_list, xmp_name, xmp_touch, xmp_overwrite_text),
                      **xlsx_options(format_list, xlsx_thumbnails)}
    if prompt is not None or fields:
        preset = quick_preset(prompt, list(fields or []), preset, settings)
    return build_config(paths, settings.out(out), settings, preset=preset, model=model, provider=provider, lang=lang,
                        categories=categories, mode=mode, formats=format_list, dry_run=dry_run, budget=budget,
                        budget_source=budget_source, price_in=price_in, price_out=price_out, concurrency=concurrency,
                        workers=workers,
                        min_side=min_side, detail=detail, max_edge=max_edge, max_megapixels=max_megapixels,
                        skip_near_duplicates=skip_near_duplicates, timeout=timeout, max_attempts=max_attempts,
                        progress=progress, detach=detach, batch_max_requests=batch_max_requests,
                        batch_max_bytes=int(batch_max_mb * 1024 * 1024), poll_interval=poll_interval,
                        images_per_request=images_per_request,
                        provider_settings=settings.base_url(base_url, provider),
                        export_options={**export_options(txt_template, txt_existing, metadata_overwrite),
                                        **chosen_exports},
                        engine=engine, ray_address=ray_address, work_dir=work_dir, ray_actors=ray_actors,
                        ray_batch_size=ray_batch_size, on_event=on_event, stdin=stdin)


def quick_preset(prompt: str | None, fields: list[str], preset: str | None, settings: Settings) -> str:
    """--prompt (with --field NAME:TYPE): the preset string for that one-line task (presets/quick.py)."""
    from imgtag.presets.quick import quick_spec

    if prompt is None:
        field, ask = option("fields"), option("prompt")
        verb = "describe" if field == "fields" else "describes"  # fields=[...] names several; --field is repeated
        raise UsageError(f"{field} {verb} the answer to a {ask}; give {ask} too, or leave {field} out")
    if preset is not None and settings.environ.get("IMGTAG_PRESET") != preset:  # given, not the environment's
        ask = option("prompt")
        raise UsageError(f"give {option('preset')} or {ask}, not both: {ask} is a task of its own")
    return quick_spec(prompt, fields)  # a bad spec: PresetError, one sentence


def build_config(paths: Sequence[str], out: Path, settings: Settings, *, preset: str | None, model: str | None,
                 provider: str | None, lang: str | None, categories: str | Sequence[str] | None,
                 stdin: TextIO | None = None, **fields: Any) -> RunConfig:
    """A RunConfig with the target settings (preset, model, provider, language, categories) taken from the
    settings path; `fields` are RunConfig's other fields as given."""
    from imgtag.config.runconfig import RunConfig
    from imgtag.presets.language import lang_problem

    chosen_lang = settings.pick(lang, "lang")
    if problem := lang_problem(chosen_lang, settings.source(lang, "lang", option("lang"))):
        raise UsageError(problem)
    chosen = settings.categories(categories if categories is None or isinstance(categories, str) else list(categories))
    if stdin is None and "-" in paths:
        stdin = sys.stdin
    return RunConfig(inputs=list(paths), out=out, preset=settings.pick(preset, "preset", DEFAULT_PRESET),
                     model=settings.pick(model, "model"), provider=settings.pick(provider, "provider",
                                                                                 DEFAULT_PROVIDER),
                     lang=chosen_lang, categories=chosen, stdin=stdin, **fields)


def _joined(formats: str | Sequence[str] | None) -> str | None:
    return formats if formats is None or isinstance(formats, str) else ",".join(formats)


def resolve(cfg: RunConfig) -> Target:
    """The preset, model and work key (a broken preset or model entry: ConfigurationError)."""
    from imgtag.config.errors import ConfigurationError
    from imgtag.providers import resolve_target

    try:
        return resolve_target(cfg)
    except OSError as exc:
        raise ConfigurationError(f"cannot read preset: {exc}") from None


def preflight(cfg: RunConfig) -> None:
    """Before anything is created or paid for: a usable --out and inputs that name at least one file."""
    from imgtag.app.preflight import check_inputs, check_out

    check_out(cfg.out)
    if cfg.source is None:
        check_inputs(cfg.inputs, exclude=[str(cfg.out.absolute())])


def open_store(out: Path, *, create: bool = True, lock: bool = True, read_only: bool = False) -> Store:
    """The store: StoreInUseError when another writer holds it, UsageError when it is missing or unusable."""
    from imgtag.store import Store

    try:
        return Store(out, create=create, lock=lock, read_only=read_only)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:  # read-only, no space, not a folder: one sentence, no traceback
        raise UsageError(f"cannot use {option('out')} {out}: {exc.strerror or exc}") from None


@dataclass
class Prepared:
    """A run whose settings, target, folder and provider were all checked; nothing created or sent yet."""

    cfg: RunConfig
    target: Target
    provider: Any  # the opened Provider (None for a dry run)


def prepare(cfg: RunConfig) -> Prepared:
    """Every check that needs the target and the provider, then the provider opened (not for a dry run)."""
    from imgtag.app.export_options import check_export_options
    from imgtag.providers import open_provider, provider_class

    target = resolve(cfg)
    check_export_options(cfg.formats, cfg.export_options, target.preset.fields, target.preset.txt_template)
    if (cfg.price_in is None) != (cfg.price_out is None):
        raise UsageError(f"give both {option('price_in')} and {option('price_out')} (USD per million tokens), or "
                         "neither")
    preflight(cfg)
    cls = provider_class(cfg.provider)
    cls.check_run(cfg, target)  # what it cannot serve: exit 2, dry runs too
    if cfg.mode == "batch" and not cls.capabilities.batch:  # refused before the store exists (issue 17.5)
        raise ProviderError(f"{option('mode', 'batch')} needs a provider with a batch API; {cfg.provider!r} has "
                            f"none (use {option('mode', 'sync')})")
    if cfg.images_per_request > 1 and cfg.mode != "batch" and not hasattr(cls, "send_params"):
        # the engine packs only through send_params (request/packing.py): said, not silently one per request
        raise UsageError(f"{option('images_per_request', cfg.images_per_request)}: the {cfg.provider} provider "
                         "sends one image per request in sync mode"
                         + (f" ({option('mode', 'batch')} packs them)" if cls.capabilities.batch
                            else f"; leave {option('images_per_request')} out"))
    if cfg.budget is not None and target.model.prices is None:
        raise BudgetError(f"{cfg.budget_source} cannot be enforced: the prices of {target.model.id} are unknown"
                          f"{_misspelt(target.model.id)}; "
                          f"set them in imgtag.toml ([models.\"{target.model.id}\"] input and output) or with "
                          f"{option('price_in')} and {option('price_out')} (USD per million tokens; 0 for a free "
                          "local model)")
    provider_obj = None if cfg.dry_run else open_provider(cfg)
    if provider_obj is not None and cfg.mode == "batch":
        from imgtag.providers.batch_api import batch_unavailable

        problem = batch_unavailable(provider_obj)  # one small request: a server without the API creates nothing
        if problem:
            import asyncio

            asyncio.run(provider_obj.aclose())  # its client never sent anything: closing is instant
            raise ProviderError(problem)
    return Prepared(cfg, target, provider_obj)


def _misspelt(model_id: str) -> str:
    """' (did you mean ...?)' for a model imgtag does not know that is close to one it does: `--model
    claude-haiku-5.5 --budget 1` is a typo to fix before any prices to set (the model list is not asked here)."""
    from imgtag.app.modelcheck import known_models
    from imgtag.config.tomlfile import did_you_mean

    known = known_models()
    return "" if model_id in known else did_you_mean(model_id, known)


class RunSession:
    """One run against its folder: joins the Ray cluster (--engine ray), opens the store, records the target
    (keeping a previous target's files, said through `say`), and runs. Use as a context manager; `run()` is a
    coroutine, so the caller picks the event loop and how an interruption is answered (`interrupted`)."""

    def __init__(self, prepared: Prepared, command: str = "run", say: Say = _quiet) -> None:
        self.prepared = prepared
        self.command = command
        self.say = say
        self.cluster: Any = None
        self.store: Store | None = None
        self.runner: Run | None = None

    def __enter__(self) -> RunSession:
        from imgtag.export.targets import target_meta

        cfg, target = self.prepared.cfg, self.prepared.target
        self.cluster = _join_ray(cfg, self.say)  # before the store: a cluster that cannot be used creates nothing
        try:
            self.store = open_store(cfg.out)
            if not cfg.dry_run:
                _switch_target(self.store, target_meta(cfg, target), cfg.formats, self.say)
            self.runner = _runner_class(cfg)(cfg, self.store, target, self.prepared.provider, command=self.command)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        try:
            if self.store is not None:
                self.store.close()
                self.store = None
        finally:
            if self.cluster is not None:
                self.cluster.close()  # the run closed it already unless it stopped early
                self.cluster = None

    async def run(self) -> RunOutcome:
        """The run, then the provider closed. A model imgtag does not know is checked first (a warning)."""
        assert self.runner is not None, "use RunSession as a context manager"
        runner, provider_obj = self.runner, self.prepared.provider
        try:
            from imgtag.app.modelcheck import check, check_without_sending

            cfg = runner.cfg
            note = (await check_without_sending(cfg.provider, dict(cfg.provider_settings), runner.target.model)
                    if cfg.dry_run else await check(provider_obj, cfg.provider, runner.target.model))
            if note:
                self.say(f"warning: {note}")
            return await runner.execute()
        finally:
            if provider_obj is not None:
                await provider_obj.aclose()

    def stop(self, grace_s: float = GRACE_S) -> StopReport | None:
        """Stop gracefully, from the event loop running `run()` (a signal handler's callback, a task beside it):
        send nothing new, wait at most `grace_s` for the answers already asked for (paid for), store them, then
        `run()` raises RunStopped. None when there is nothing to wait for (nothing sent yet, batch mode, Ray): the
        caller then aborts as before, by cancelling the task running `run()`, which stays the immediate stop."""
        return self.runner.stop(grace_s) if self.runner is not None else None

    def interrupted(self, exit_code: int) -> str:
        """Mark the run interrupted in the store; the one line to show."""
        assert self.runner is not None
        return self.runner.interrupted(exit_code)

    def summary(self) -> Summary:
        """What the run has done, counted as its end-of-run summary is (for a run that was interrupted)."""
        from imgtag.app.summary import summarize

        runner = self.runner
        assert runner is not None, "use RunSession as a context manager"
        counted = runner.ingestor.counted if runner.ingestor is not None else None
        return summarize(runner.store.db, runner.key, run_id=runner.run_id, counted=counted)

    @property
    def done_before(self) -> int:
        return self.runner.done_before if self.runner is not None else 0

    @property
    def missing_args(self) -> list[str]:
        return self.runner.missing_args if self.runner is not None else []

    @property
    def path_base(self) -> str | None:
        return self.runner.path_base if self.runner is not None else None


def _join_ray(cfg: RunConfig, say: Say) -> Any:
    """--engine ray: reach the cluster (or start a local one) before anything is created; says in one line where
    Ray's own log lines go (not to the terminal)."""
    if cfg.engine != "ray" or cfg.dry_run:
        return None
    from imgtag.request.distributed.cluster import connect
    from imgtag.util.words import plural

    conn = connect(cfg.ray_address, cfg.workers, log_dir=Path(cfg.out))  # ClusterProblem, RayMissing: one line
    if conn.address:
        where = f"joined the Ray cluster at {conn.address}"
    else:
        where = "started a local Ray cluster" if conn.started_here else "using this process's Ray cluster"
    logs = f"; Ray's own log lines go to {conn.route.path}" if conn.route.path else ""
    say(f"{where} ({plural(conn.nodes, 'node')}){logs}")
    return conn


def _runner_class(cfg: RunConfig) -> type[Run]:
    from imgtag.app.runner import Run  # only now: decoders and numpy load after every configuration check

    if cfg.engine == "ray" and not cfg.dry_run:  # Ray is imported only here, never by the default engine
        from imgtag.app.ray_runner import DistributedRun

        return DistributedRun
    return Run


def _switch_target(store: Store, meta: dict[str, Any], formats: str, say: Say) -> None:
    """Record this run's target; when the folder's default files held another target, keep that one's files in
    targets/<preset>[-<lang>]--<model>/ first and say so, so nothing is replaced silently."""
    from imgtag.export.targets import label, record, selection_flags, slug, target_dir
    from imgtag.export.writer import write_exports

    previous = record(store, meta)
    if previous is None:
        return
    try:
        write_exports(store, previous, previous.get("formats") or formats)
    except ValueError:
        write_exports(store, previous, "csv,jsonl")
    kept = target_dir(store, previous)
    say(f"{_switch_words(store.out_dir, meta, previous, formats)}; the {label(previous)} results are kept in "
        f"{kept.parent.name}/{slug(previous)}/ (`imgtag export {selection_flags(previous)}` rebuilds them)")


def _switch_words(out: Path, meta: dict[str, Any], previous: dict[str, Any], formats: str) -> str:
    """What this run writes for the new target, and which files in --out still show the previous one (a message
    never claims results.csv holds a target that a --format xmp run did not write there)."""
    from imgtag.export import FOLDER_FILES, parse_formats
    from imgtag.export.targets import label

    def folder_files(spec: str | None) -> list[str]:
        try:
            return [FOLDER_FILES[name] for name in parse_formats(spec or "csv,jsonl") if name in FOLDER_FILES]
        except ValueError:
            return []

    ours = folder_files(formats)
    beside = [name for name in parse_formats(formats) if name not in FOLDER_FILES]
    stale = [name for name in folder_files(previous.get("formats")) if name not in ours and (out / name).exists()]
    words = []
    if ours:
        words.append(f"{', '.join(ours)} in {out} will hold {label(meta)}")
    if beside:
        words.append(f"this run writes {label(meta)} as {', '.join(beside)} beside the images")
    if stale:
        verb = "shows" if len(stale) == 1 else "show"
        words.append(f"{', '.join(stale)} in {out} still {verb} {label(previous)} (`imgtag export --format "
                     f"{','.join(k for k, v in FOLDER_FILES.items() if v in stale)}` rewrites "
                     f"{'it' if len(stale) == 1 else 'them'} for {label(meta)})")
    return "; ".join(words)
