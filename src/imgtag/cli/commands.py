"""The command line. Exit codes: 0 all done, 1 finished with failures, 2 usage or configuration error."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

# The exit path (fastexit, interrupt) is imported with the commands, not on the way out: a Ctrl-C just after a
# command's last line met that import and printed a KeyboardInterrupt traceback. Both are small.
from imgtag.cli.fastexit import leave
from imgtag.cli.interrupt import last_signal, sigterm_as_interrupt, stop_gracefully_first
from imgtag.cli.params import FastGroup
from imgtag.cli.screen import Lines, write_fitted
from imgtag.config.errors import ImgtagError
from imgtag.config.exits import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from imgtag.util.money import usd

if TYPE_CHECKING:  # imported where used: `--help` and configuration errors must not pay for them (bench/startup.py)
    from typer._click import Context

    from imgtag.app.run import RunSession
    from imgtag.app.scan import ScanSession
    from imgtag.app.settings import Settings
    from imgtag.config.runconfig import RunConfig

ENV_HELP = ("Environment: ANTHROPIC_API_KEY (needed for paid commands), ANTHROPIC_BASE_URL (a compatible "
            "gateway); OPENAI_API_KEY, OPENAI_BASE_URL (--provider openai: OpenAI or a local server); "
            "IMAGEDESCRIBER_API_KEY, IMAGEDESCRIBER_BASE_URL, IMAGEDESCRIBER_REQUESTS_PER_MINUTE (--provider "
            "imagedescriber); IMGTAG_PRESET, IMGTAG_MODEL, IMGTAG_PROVIDER, IMGTAG_LANG, IMGTAG_CATEGORIES, "
            "IMGTAG_OUT. "
            "Lowest precedence: ./imgtag.toml (docs/config.md). Exit codes: 0 all done, 1 finished with failures "
            "or images left pending, 2 usage or configuration error.")


class _Commands(FastGroup):
    """The app's commands, with one place that turns any ImgtagError into its sentence and exit code."""

    def invoke(self, ctx: Any) -> Any:
        from imgtag.config.options import cli_naming

        try:
            with cli_naming():  # messages name flags, not the Python API's parameters (config/options.py)
                return super().invoke(ctx)
        except ImgtagError as exc:
            raise _fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM in a command that does not answer it itself (`run` and `retry` do): every
            # `finally` has run (temporary files removed, helpers told to stop); one sentence, not typer's silence.
            from imgtag.app.messages import command_interrupted

            signal = last_signal()
            raise _fail(command_interrupted(ctx.invoked_subcommand), signal.exit_code) from None


app = typer.Typer(cls=_Commands, add_completion=False, no_args_is_help=True, rich_markup_mode=None, epilog=ENV_HELP,
                  context_settings={"max_content_width": 100},
                  help="Tag and describe folders of images with vision-language models.")

DetailOpt = Annotated[str | None, typer.Option(
    metavar="LEVEL", help="Image detail: low | standard | high.  [default: the preset's own]")]
MaxEdgeOpt = Annotated[int | None, typer.Option(metavar="PX", help="Long-edge cap, overriding the detail level.")]
OutOpt = Annotated[Path | None, typer.Option(
    "--out", metavar="DIR", envvar="IMGTAG_OUT", show_default=False,
    help="Output folder: holds imgtag.db and the exports.  [default: imgtag-out]")]
PathsArg = Annotated[list[str], typer.Argument(metavar="PATH", show_default=False,
                                                help="Files, folders, globs, @list.txt, or - for stdin.")]
# Each provider's own default model (kept in step with the providers' `default_model`; test_unknown_cost.py checks).
MODEL_DEFAULTS = ("[default: claude-haiku-5-5 for anthropic, gpt-4.1-mini for openai, imagedescriber-v1 for "
                  "imagedescriber]")
MODEL_HELP = "Provider model id.  " + MODEL_DEFAULTS
ProviderOpt = Annotated[str | None, typer.Option(
    metavar="NAME", envvar="IMGTAG_PROVIDER",
    help="anthropic, openai, ... (`imgtag providers`).  [default: anthropic]")]
BaseUrlOpt = Annotated[str | None, typer.Option(
    metavar="URL", help="API base URL, e.g. a local vLLM/Ollama server.")]
BudgetOpt = Annotated[float | None, typer.Option(
    metavar="USD", help="Spend limit for this invocation (earlier runs do not count): no request starts "
    "past it. Needs known prices (the catalogue, or --price-in/--price-out).")]
ConcurrencyOpt = Annotated[int | None, typer.Option(
    metavar="N", help="Upper bound on requests in flight.  [default: 64]")]
FORMATS_HELP = "csv,jsonl (default), xlsx, parquet, metadata-jsonl, txt, json-sidecar, html, xmp, xmp-embed"
TxtTemplateOpt = Annotated[str | None, typer.Option(
    "--txt-template", metavar="TEMPLATE",
    help="txt captions: e.g. '{short_caption}' or '{tags}' (lists joined with ', ').")]
TxtExistingOpt = Annotated[str | None, typer.Option(
    "--txt-existing", metavar="skip|overwrite|append|prepend",
    help="A .txt imgtag did not write: skip (default), overwrite, append or prepend.")]
MetadataOverwriteOpt = Annotated[bool, typer.Option(
    "--metadata-overwrite", help="Replace a metadata.jsonl that imgtag did not write.")]


class _PlainHelp(TyperCommand):
    """Typer's help with plain metavars: `PATH...`, not `{PATH}...` and `PATH <list[str]>`."""

    @staticmethod
    def _plain(text: str) -> str:
        text = re.sub(r"\{(\w+)\}\.\.\.", r"\1...", text)
        return re.sub(r"(\w+) <list\[str\]>", lambda m: (m.group(1) + "...").ljust(len(m.group(0))), text)

    def get_help(self, ctx: Context) -> str:
        return self._plain(super().get_help(ctx))

    def get_usage(self, ctx: Context) -> str:
        return self._plain(super().get_usage(ctx))


def _n(count: int, noun: str) -> str:
    """1 image, 2 images; 1 batch, 2 batches."""
    from imgtag.util.words import plural

    return plural(count, noun)


def _console(err: bool = True) -> Lines:
    """Where the CLI prints: every line fitted to the terminal, wrapped between words (screen.py)."""
    return Lines(err)


def _fail(message: str, code: int = EXIT_CONFIG) -> typer.Exit:
    # Plain text, not rich: nothing to style, and a configuration error should not wait for rich to load.
    write_fitted(sys.stderr, f"imgtag: {message}")
    sys.stderr.flush()
    return typer.Exit(code)


def _settings() -> Settings:
    """The settings path (app/settings.py): flags, then the environment, then ./imgtag.toml."""
    from imgtag.app.settings import Settings

    return Settings.load()


def _out(out: Path | None) -> Path:
    """--out (or IMGTAG_OUT, which typer reads), else imgtag.toml's `out`, else ./imgtag-out."""
    return _settings().out(out)


XmpNameOpt = Annotated[str | None, typer.Option(
    "--xmp-name", metavar="full|stem", help="XMP sidecar names: full (photo.jpg.xmp, default) or stem (photo.xmp).")]
XmpTouchOpt = Annotated[bool, typer.Option(
    "--xmp-touch", help="xmp-embed: leave the files' modification time at now (default: keep it).")]
XlsxThumbnailsOpt = Annotated[bool | None, typer.Option(
    "--xlsx-thumbnails/--no-xlsx-thumbnails", show_default=False,
    help="xlsx: a small thumbnail in each row (remembered by later exports).")]
XmpOverwriteTextOpt = Annotated[bool, typer.Option(
    "--xmp-overwrite-text", help="XMP: replace titles and descriptions imgtag did not write (default: keep them).")]
_SHOWN_PATHS = 10  # per-image formats write thousands of files; list a few, count the rest


def _print_written(paths: list[Path], notes: list[str], path_base: str | None = None) -> None:
    console = _console()
    from imgtag.export import FOLDER_FILES

    # The results files (whose `path` is measured from the base) on a line of their own, so they are never lost
    # among "and 30 more" sidecars, and the base is said beside them, not after paths it does not describe.
    results = [p for p in paths if p.name in FOLDER_FILES.values()]
    beside = [p for p in paths if p.name not in FOLDER_FILES.values()]
    if results:
        base = f" (paths relative to {path_base})" if path_base else ""
        console.print(f"wrote {', '.join(str(p) for p in results)}{base}", markup=False)
    if beside:
        shown = ", ".join(str(p) for p in beside[:_SHOWN_PATHS])
        more = f" and {len(beside) - _SHOWN_PATHS} more" if len(beside) > _SHOWN_PATHS else ""
        console.print(f"wrote {shown}{more}", markup=False)
    for note in notes:
        console.print(note, markup=False)


# -- scan ----------------------------------------------------------------------------------------

@app.command(cls=_PlainHelp, epilog=ENV_HELP)
def scan(
    paths: PathsArg,
    out: OutOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per file, then a summary.")] = False,
    model: Annotated[str | None, typer.Option(metavar="ID", envvar="IMGTAG_MODEL", help=(
        "Model whose image sizing and cost are reported (with its imgtag.toml prices, else unknown).  "
        + MODEL_DEFAULTS))] = None,
    provider: ProviderOpt = None,
    base_url: BaseUrlOpt = None,
    preset: Annotated[str | None, typer.Option(metavar="NAME", envvar="IMGTAG_PRESET",
                                               help="Preset name or file.  [default: ecommerce]")] = None,
    lang: Annotated[str | None, typer.Option(metavar="CODE", envvar="IMGTAG_LANG",
                                             help="Output language code.")] = None,
    detail: DetailOpt = None,
    max_edge: MaxEdgeOpt = None,
    min_side: Annotated[int, typer.Option(metavar="PX", help="Skip images whose short side is smaller.")] = 200,
    max_megapixels: Annotated[float, typer.Option(metavar="MP", help="Refuse images declaring more pixels.")] = 100.0,
    workers: Annotated[int | None, typer.Option(metavar="N", help="Decoding processes.  [default: all cores]")] = None,
    images_per_request: Annotated[int, typer.Option(
        metavar="K", help="Estimate with up to K labelled images per request (see run).")] = 1,
) -> None:
    """Check images and estimate the cost, offline (spends nothing).

    Discovers, prefilters and preprocesses exactly as `run` would, without any request."""
    from imgtag.app.scan import ScanSession

    with ScanSession(paths, _settings(), out=out, model=model, provider=provider, preset=preset, lang=lang,
                     detail=detail, max_edge=max_edge, min_side=min_side, max_megapixels=max_megapixels,
                     workers=workers, images_per_request=images_per_request, base_url=base_url) as session:
        _scan(session, as_json)


def _scan(session: ScanSession, as_json: bool) -> None:
    from imgtag.export.jsonline import json_line

    console = _console(err=False)
    rows_out = sys.stdout

    def emit(entry: dict[str, Any]) -> None:
        if as_json:
            rows_out.write(json_line(entry) + "\n")
            return
        size = f"{entry['width']}x{entry['height']}" if entry["width"] else "-"
        note = entry["reason"] or (f"duplicate of {entry['duplicate_of']}" if entry["duplicate_of"] else "")
        if not note and entry["near_duplicate_of"]:
            note = f"near-duplicate of {entry['near_duplicate_of']}"
        tokens = entry["image_tokens"] if entry["image_tokens"] is not None else "-"  # shows --detail's effect
        write_fitted(rows_out, f"{entry['status']:<8} {entry['format'] or '-':<9} {size:>11} {tokens!s:>6}  "
                               f"{entry['path']}{'  — ' + note if note else ''}", indent=" " * 4)

    if not as_json:
        rows_out.write(f"{'status':<8} {'format':<9} {'size':>11} {'img tk':>6}  path\n")
    import asyncio

    result, summary = asyncio.run(session.run(emit, _say))
    if as_json:
        rows_out.write(json_line(summary) + "\n")
    else:
        _print_scan_summary(console, summary)
    for arg in result.missing_args:
        _console().print(f"imgtag: nothing matched {arg!r}", markup=False)
    if result.missing_args and not summary["files"]:
        raise typer.Exit(EXIT_CONFIG)


def _say(line: str) -> None:
    """A line the shared use cases (app/) have for the person at the terminal."""
    _console().print(f"imgtag: {line}", markup=False)


def _print_scan_summary(console: Lines, s: dict[str, Any]) -> None:

    console.print()
    counts = ", ".join(f"{k} {v}" for k, v in sorted(s["by_status"].items()))
    console.print(f"{_n(s['files'], 'file')}: {counts}; {_n(s['distinct_images'], 'distinct image')} to tag",
                  markup=False)
    if s["by_reason"]:
        console.print("reasons: " + ", ".join(f"{k} {v}" for k, v in sorted(s["by_reason"].items())), markup=False)
    from imgtag.cli.costview import print_estimates

    print_estimates(console, s["preset"], s["estimates"], s.get("selected_model"))
    packs = s["images_per_request"]
    if packs["sync"] != packs["batch"]:
        console.print(f"sync: one image per request (this provider packs {packs['batch']} to a request only in "
                      "--mode batch; the per-image figures above are for its packs)", markup=False)


# -- run / retry -----------------------------------------------------------------------------------

EventsOpt = Annotated[str | None, typer.Option(
    "--events", metavar="FILE|-", help="Write the run's events as JSON lines to FILE, or - for stdout "
    "(docs/events.md).")]


@app.command(cls=_PlainHelp, epilog=ENV_HELP)
def run(
    paths: PathsArg,
    out: OutOpt = None,
    preset: Annotated[str | None, typer.Option(
        metavar="NAME", envvar="IMGTAG_PRESET",
        help="ecommerce, keywords, alt-text, caption, ocr, or a preset FILE.  [default: ecommerce]")] = None,
    provider: ProviderOpt = None,
    base_url: BaseUrlOpt = None,
    model: Annotated[str | None, typer.Option(metavar="ID", envvar="IMGTAG_MODEL", help=MODEL_HELP)] = None,
    mode: Annotated[str | None, typer.Option(
        metavar="MODE", help="sync, or batch (half price, asynchronous).  [default: sync]")] = None,
    lang: Annotated[str | None, typer.Option(metavar="CODE", envvar="IMGTAG_LANG",
                                             help="Output language (zh, en, ja, ...).")] = None,
    categories: Annotated[str | None, typer.Option(metavar="LIST", envvar="IMGTAG_CATEGORIES",
                                                   help="Allowed categories: a,b,c or @file.txt.")] = None,
    format: Annotated[str | None, typer.Option("--format", metavar="LIST", help=f"Exports: {FORMATS_HELP}")] = None,
    txt_template: TxtTemplateOpt = None,
    txt_existing: TxtExistingOpt = None,
    metadata_overwrite: MetadataOverwriteOpt = False,
    xmp_name: XmpNameOpt = None,
    xmp_touch: XmpTouchOpt = False,
    xmp_overwrite_text: XmpOverwriteTextOpt = False,
    xlsx_thumbnails: XlsxThumbnailsOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Everything except paid requests.")] = False,
    budget: BudgetOpt = None,
    price_in: Annotated[float | None, typer.Option(
        metavar="USD", help="Input price per million tokens, for a model imgtag has no prices for.")] = None,
    price_out: Annotated[float | None, typer.Option(
        metavar="USD", help="Output price per million tokens, for a model imgtag has no prices for.")] = None,
    concurrency: ConcurrencyOpt = None,
    workers: Annotated[int | None, typer.Option(metavar="N", help="Decoding processes.  [default: all cores]")] = None,
    detail: DetailOpt = None,
    max_edge: MaxEdgeOpt = None,
    min_side: Annotated[int, typer.Option(metavar="PX", help="Skip images whose short side is smaller.")] = 200,
    max_megapixels: Annotated[float, typer.Option(metavar="MP", help="Refuse images declaring more pixels.")] = 100.0,
    skip_near_duplicates: Annotated[bool, typer.Option("--skip-near-duplicates",
                                                       help="Do not tag near-duplicates.")] = False,
    timeout: Annotated[float, typer.Option(metavar="SECONDS", help="Wait this long for one response.")] = 120.0,
    max_attempts: Annotated[int, typer.Option(metavar="N", help="Attempts per image on transient errors.")] = 6,
    detach: Annotated[bool, typer.Option("--detach",
                                         help="Batch mode: submit and exit; a later run collects.")] = False,
    batch_max_requests: Annotated[int, typer.Option(metavar="N",
                                                    help="Requests per batch (API max: Anthropic 100000, "
                                                         "OpenAI 50000).")] = 100_000,
    batch_max_mb: Annotated[float, typer.Option(
        metavar="MB", help="Megabytes per batch (API max: Anthropic 256, OpenAI 200; submitting holds about 3x "
                           "this in memory).")] = 100.0,
    poll_interval: Annotated[float, typer.Option(metavar="SECONDS",
                                                 help="Batch mode: first poll interval.")] = 5.0,
    images_per_request: Annotated[int, typer.Option(
        metavar="K", help="Pack up to K labelled images into one request (see README).")] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress line.")] = False,
    engine: Annotated[str, typer.Option(metavar="NAME",
                                        help="local, or ray: a Ray cluster (docs/scale.md).")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        metavar="ADDRESS", help="Ray cluster address.  [default: RAY_ADDRESS, else a local cluster]")] = None,
    work_dir: Annotated[str | None, typer.Option(
        metavar="URI", help="--engine ray: shared work folder, a path or URI such as s3://b/p.  "
        "[default: OUT/ray-work]")] = None,
    ray_actors: Annotated[int, typer.Option(metavar="N", help="--engine ray: request actors.")] = 2,
    ray_batch_size: Annotated[int, typer.Option(metavar="N", help="--engine ray: images per result shard.")] = 16,
    events: EventsOpt = None,
    prompt: Annotated[str | None, typer.Option(
        metavar="TEXT", help="A one-line task instead of a preset; the answer is one text field, answer, unless "
        "--field says otherwise (docs/config.md).")] = None,
    field: Annotated[list[str] | None, typer.Option(
        "--field", metavar="NAME:TYPE", help="With --prompt, a field of the answer (repeat); TYPE is str, int, "
        "float, bool or list (of texts).")] = None,
) -> None:
    """Tag and describe images with a model (paid).

    Resumable: run the same command again to continue after any interruption; nothing answered is asked twice."""
    from imgtag.app.run import run_config

    cfg = run_config(paths, _settings(), out=out, preset=preset, provider=provider, base_url=base_url, model=model,
                     mode=mode, lang=lang, categories=categories, formats=format, txt_template=txt_template,
                     txt_existing=txt_existing, metadata_overwrite=metadata_overwrite, xmp_name=xmp_name,
                     xmp_touch=xmp_touch, xmp_overwrite_text=xmp_overwrite_text, xlsx_thumbnails=xlsx_thumbnails,
                     dry_run=dry_run, budget=budget, price_in=price_in, price_out=price_out, concurrency=concurrency,
                     workers=workers, detail=detail, max_edge=max_edge, min_side=min_side,
                     max_megapixels=max_megapixels, skip_near_duplicates=skip_near_duplicates, timeout=timeout,
                     max_attempts=max_attempts, detach=detach, batch_max_requests=batch_max_requests,
                     batch_max_mb=batch_max_mb, poll_interval=poll_interval, images_per_request=images_per_request,
                     progress=not quiet, engine=engine, ray_address=ray_address, work_dir=work_dir,
                     ray_actors=ray_actors, ray_batch_size=ray_batch_size, prompt=prompt, fields=field)
    _check_events(events)
    _execute_with_events(cfg, "run", events)


def _check_events(events: str | None) -> None:
    """--events FILE that cannot be written: one sentence and exit 2, before anything is created."""
    if events is not None:
        from imgtag.events.jsonl import problem

        if (text := problem(events)) is not None:
            raise _fail(text)


def _execute_with_events(cfg: RunConfig, command: str, events: str | None) -> None:
    if events is None:
        _execute(cfg, command)
        return
    from imgtag.events.jsonl import JsonLines

    writer = JsonLines(events)
    cfg.on_event = writer
    try:
        _execute(cfg, command)
    finally:
        writer.close()


def _execute(cfg: RunConfig, command: str) -> None:
    """Prepare (every check), run with Ctrl-C and SIGTERM answered in one line, report, exit with the run's code."""
    from imgtag.app.run import RunSession, prepare
    from imgtag.app.stopping import RunStopped

    prepared = prepare(cfg)
    with RunSession(prepared, command, _say) as session, sigterm_as_interrupt() as interruption:
        import asyncio  # ~25 ms: not on the path of --help and configuration errors

        try:
            outcome = asyncio.run(_run_stopping_gracefully(session))
        except (KeyboardInterrupt, RunStopped):
            raise _fail(session.interrupted(interruption.exit_code), interruption.exit_code) from None
    _report(outcome, cfg, prepared.target, session.missing_args, session.path_base)
    if session.missing_args and outcome.summary.files == 0:
        raise typer.Exit(EXIT_CONFIG)  # nothing to do because nothing matched: a usage error
    raise typer.Exit(outcome.exit_code)


async def _run_stopping_gracefully(session: RunSession) -> Any:
    """The run, with its first Ctrl-C or SIGTERM a graceful stop: said at once in one sentence."""
    def stop(signal_name: str) -> bool:
        from imgtag.app.messages import stopping_message
        from imgtag.app.stopping import GRACE_S, GRACE_SIGTERM_S

        report = session.stop(GRACE_SIGTERM_S if signal_name == "SIGTERM" else GRACE_S)
        if report is None:
            return False
        write_fitted(sys.stderr, stopping_message(report, signal_name if signal_name == "SIGTERM" else "Ctrl-C"))
        sys.stderr.flush()
        return True

    with stop_gracefully_first(stop):
        return await session.run()


def _report(outcome: Any, cfg: RunConfig, target: Any, missing: list[str], path_base: str | None) -> None:
    from imgtag.app.progress import resume_note

    console = _console()
    for arg in missing:
        console.print(f"imgtag: nothing matched {arg!r}", markup=False)
    s = outcome.summary
    prices = target.model.prices
    if prices is not None and prices.input == prices.output == 0:  # declared free: say where, since $0 is a claim
        console.print(f"{target.model.id}: priced at $0 per million tokens ({target.model.source})", markup=False)
    if cfg.dry_run and outcome.estimator is not None:
        from imgtag.cli.costview import dry_run_line, left_out_line

        if (left_out := left_out_line(s.files, s.by_status, s.by_error)) is not None:
            console.print(left_out, markup=False)
        console.print(dry_run_line(next(iter(outcome.estimator.totals.values()))), markup=False)
        return
    counts = ", ".join(f"{k} {v}" for k, v in sorted(s.by_status.items())) or "no files"
    console.print(f"{_n(s.files, 'file')}: {counts}; {_n(s.requests, 'request')}, "
                  f"{s.input_tokens:,} in / {s.output_tokens:,} out tokens, "
                  f"{_spent_words(s)}",
                  markup=False)
    if s.credits_spent is not None or s.credits_remaining is not None:
        console.print(_credits_line(s), markup=False)
    if s.by_error:
        console.print("not ok: " + ", ".join(f"{k} {v}" for k, v in sorted(s.by_error.items())), markup=False)
    note = resume_note(s.files, outcome.done_before, s.cost_usd, outcome.spent_to_date_usd)
    if note:
        console.print(note, markup=False)
    if outcome.message:
        console.print(f"imgtag: {outcome.message}", markup=False)
    if outcome.exports or outcome.export_notes:
        _print_written(outcome.exports, outcome.export_notes, path_base)
    if outcome.not_written:
        console.print(f"imgtag: {outcome.not_written}", markup=False)
    if s.by_status.get("failed"):
        console.print(f"see `imgtag status` for causes; {_retry_words(cfg.out)}", markup=False)


def _retry_words(out: Path) -> str:
    """What `imgtag retry` would do with the failures, so the run never promises a retry that retry then refuses."""
    from imgtag.app.retry_plan import retry_plan

    plan = retry_plan(out, progress=False, look_only=True)
    if plan.count:
        return f"`imgtag retry` asks again for the {_n(plan.count, 'failure')} a new ask can fix"
    return "asking again would fail the same way (`imgtag retry --all` forces it)"


def _spent_words(s: Any) -> str:
    """The run's cost; for a credit-billed provider, where it is said (the credits line); or why it is unknown:
    some tokens were paid at prices nobody knows. Requests that billed no token (all refused before the model
    read anything) cost $0 whatever the price, as `status` and the results files say (README's results contract)."""
    if s.credits_spent is not None:
        return "billed in credits"
    if s.cost_usd is None:
        return "cost unknown (no prices for this model: imgtag.toml [models] or --price-in/--price-out set them)"
    return usd(s.cost_usd)


def _credits_line(s: Any) -> str:
    """Credit-billed providers: credits are the real cost; the dollar figure does not include them."""
    def num(x: float | None) -> str:
        return "unknown" if x is None else f"{x:,.6g}"
    return (f"credits: {num(s.credits_spent)} spent, {num(s.credits_remaining)} remaining "
            "(billed in credits: not included in the $ cost)")


@app.command()
def retry(out: OutOpt = None,
          force: Annotated[bool, typer.Option("--all", help="Also retry failures that would fail the same way "
                                                             "again (bombs, refusals, ...).")] = False,
          quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
          base_url: BaseUrlOpt = None, budget: BudgetOpt = None, concurrency: ConcurrencyOpt = None,
          events: EventsOpt = None) -> None:
    """Retry failures that a new ask can fix.

    Works on the latest target (and the server it used, unless --base-url names another); says what it will
    retry, and the estimated cost, first."""
    from imgtag.app.retry import estimate_retry, plan_retry

    _check_events(events)
    plan = plan_retry(out, _settings(), force=force, progress=not quiet, base_url=base_url, budget=budget,
                      concurrency=concurrency)
    folder = _out(out)
    console = _console()
    left = ", ".join(f"{k} {v}" for k, v in sorted(plan.left_out.items()))
    if plan.cfg is None:
        if plan.left_out:
            console.print(f"imgtag: nothing to retry in {folder}: {_n(sum(plan.left_out.values()), 'failure')} "
                          f"would fail the same way again ({left}); `imgtag retry --all` forces them", markup=False)
        else:
            console.print(f"imgtag: no failures to retry in {folder}", markup=False)
        raise typer.Exit(EXIT_OK)
    _, cost = estimate_retry(plan)
    causes = ", ".join(f"{k} {v}" for k, v in sorted(plan.retrying.items()))
    unpriced = ""
    if plan.undecodable:
        count = sum(plan.undecodable.values())
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(plan.undecodable.items()))
        unpriced = (f"; the estimate leaves out {count} unchanged {'file' if count == 1 else 'files'} that could not "
                    f"be decoded ({reasons}): {'it fails' if count == 1 else 'they fail'} again without a request")
    console.print(f"retrying {_n(plan.count, 'image')} ({causes}), estimated {usd(cost)}{unpriced}", markup=False)
    if plan.left_out:
        console.print(f"not retrying {_n(sum(plan.left_out.values()), 'image')} that would fail the same way again "
                      f"({left}); `imgtag retry --all` retries them too", markup=False)
    _execute_with_events(plan.cfg, "retry", events)


# -- status / export / presets -------------------------------------------------------------------

PresetSel = Annotated[str | None, typer.Option("--preset", metavar="NAME",
                                               help="Which target: preset name (default: the latest run's).")]
ModelSel = Annotated[str | None, typer.Option("--model", metavar="ID",
                                              help="Which target: model id (default: the latest run's).")]
LangSel = Annotated[str | None, typer.Option("--lang", metavar="CODE",
                                             help="Which target: output language (default: the latest run's).")]


@app.command()
def status(out: OutOpt = None,
           as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
           preset: PresetSel = None, model: ModelSel = None, lang: LangSel = None,
           base_url: BaseUrlOpt = None) -> None:
    """Show counts, failures, tokens and spend to date.

    For one target (the latest, or --preset/--model/--lang), with live batch states when a key is set (asked of
    --base-url, else the server the latest run used)."""
    from imgtag.app.folder import status_report
    from imgtag.cli.status import render

    report = status_report(_out(out), _settings(), preset=preset, model=model, lang=lang, base_url=base_url)
    if as_json:
        from imgtag.export.jsonline import json_line

        print(json_line(report))
        return
    credits = None
    if report["credits_spent"] is not None or report["credits_remaining"] is not None:
        from types import SimpleNamespace

        credits = _credits_line(SimpleNamespace(**report))
    console = _console(err=False)
    for line in render(report, credits):
        console.print(line, markup=False)


@app.command()
def export(out: OutOpt = None,
           format: Annotated[str | None, typer.Option("--format", metavar="LIST", help=FORMATS_HELP)] = None,
           txt_template: TxtTemplateOpt = None,
           txt_existing: TxtExistingOpt = None,
           metadata_overwrite: MetadataOverwriteOpt = False,
           xmp_name: XmpNameOpt = None, xmp_touch: XmpTouchOpt = False,
           reviewed_only: Annotated[bool, typer.Option(
               "--reviewed-only", help="Only images approved in `imgtag review`.")] = False,
           xmp_overwrite_text: XmpOverwriteTextOpt = False, xlsx_thumbnails: XlsxThumbnailsOpt = None,
           preset: PresetSel = None, model: ModelSel = None, lang: LangSel = None,
           every: Annotated[bool, typer.Option("--all", help="Every file this folder has seen, not only the "
                                                             "latest run's inputs.")] = False) -> None:
    """Rebuild the output files from the store.

    Written atomically, without asking any model again. The latest target goes to the folder itself;
    another (--preset/--model/--lang) to targets/<preset>[-<lang>]--<model>/. Rows are the latest run's
    inputs (--all: every file the folder has seen), paths relative to the folder's one base."""
    from imgtag.app.folder import export as export_folder
    from imgtag.export.writer import ExportRefused

    try:
        done = export_folder(_out(out), formats=format, txt_template=txt_template, txt_existing=txt_existing,
                             metadata_overwrite=metadata_overwrite, xmp_name=xmp_name, xmp_touch=xmp_touch,
                             xmp_overwrite_text=xmp_overwrite_text, xlsx_thumbnails=xlsx_thumbnails,
                             reviewed_only=reviewed_only, preset=preset, model=model, lang=lang, every=every)
    except ExportRefused as exc:
        _print_written(exc.written, exc.notes, exc.path_base)
        raise
    _print_written(done.written, done.notes, done.path_base)
    if done.not_written is not None:
        raise _fail(done.not_written, EXIT_FAILED)


@app.command()
def review(out: OutOpt = None,
           preset: PresetSel = None, model: ModelSel = None, lang: LangSel = None,
           port: Annotated[int | None, typer.Option(
               "--port", metavar="N", show_default=False,
               help="Port to listen on.  [default: 8420, else a free one]")] = None,
           host: Annotated[str, typer.Option("--host", metavar="ADDR",
                                             help="Address to listen on (anything but loopback warns).")] = "127.0.0.1",
           no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser.")] = False) -> None:
    """Check, edit and approve results in a local page.

    Prints the page's address with its access token first; Ctrl-C stops it (docs/review.md). Edits are kept in
    the store beside the model's answers and reach every export; it can run while `imgtag run` works on the same
    --out."""
    if port is not None and not 0 <= port <= 65535:
        raise _fail(f"--port must be from 0 to 65535, not {port}")
    from imgtag.api import open_review

    with open_review(_out(out), preset=preset, model=model, lang=lang) as session:  # no folder lock
        from imgtag.review.serve import serve

        serve(session.out, session.service, host=host, port=port, open_browser=not no_browser,
              say=lambda line: print(line, flush=True),
              warn=lambda line: print(line, file=sys.stderr, flush=True))


@app.command()
def presets() -> None:
    """List the built-in presets with their fields."""
    from imgtag.presets import builtin_names, load_preset

    console = _console(err=False)
    for name in builtin_names():
        p = load_preset(name)
        # Continuation lines stay under the description column.
        console.print(f"{name:<10} {p.description}", indent=" " * 11)
        console.print(f"{'':<10} fields: {', '.join(p.fields)}; detail {p.detail}; version {p.version}", indent="")


@app.command("providers")
def providers_command(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False) -> None:
    """List installed providers and what each supports."""
    from imgtag.providers.listing import print_providers

    print_providers(_console(err=False), as_json=as_json)


@app.command()
def cancel(out: OutOpt = None, base_url: BaseUrlOpt = None) -> None:
    """Cancel live batches (their unanswered images become pending).

    Asks --base-url, else the server the latest run used."""
    from imgtag.request.batch.runner import cancel_batches

    settings = _settings()

    def say(text: str, err: bool) -> None:  # fitted to the terminal, as every other line imgtag prints
        _console(err).print(f"imgtag: {text}" if err else text, markup=False)

    raise typer.Exit(cancel_batches(settings.out(out), server=lambda meta: settings.server(base_url, meta), say=say))


@app.command()
def prune(out: OutOpt = None,
          yes: Annotated[bool, typer.Option("--yes", help="Remove them (without it, only say what would go).")] = False,
          ) -> None:
    """Remove files that no longer exist on disk from the store.

    Says first what would go: the count and a few paths (a dry run; --yes removes them). Files on disk are never
    touched; answers stay for copies and for the same image added again (docs/store.md)."""
    from imgtag.app import prune as pr
    from imgtag.app.run import open_store

    out = _out(out)
    with open_store(out, create=False) as store:  # the folder lock: never beside a run into the same --out
        found = pr.plan(store)
        console = _console(err=False)
        if not found.missing:
            console.print(f"all {_n(found.checked, 'file')} in {out} exist on disk; nothing to prune", markup=False)
            return
        if yes:
            removed = pr.apply(store, found)
            console.print(f"removed {_n(removed, 'file')} that no longer exist on disk from the store in {out} "
                          "(files on disk untouched); `imgtag export` rebuilds the results without them",
                          markup=False)
            return
    for line in pr.report(found, out):
        console.print(line, markup=False)


def _version(value: bool) -> None:
    if value:
        from imgtag.version import __version__

        print(f"imgtag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Show the version and exit.")] = False) -> None:
    """imgtag: tag and describe folders of images with vision-language models."""


def main() -> None:
    try:
        # SIGTERM (a service manager's stop) is a Ctrl-C for every command: without this, only `run` answered
        # it and any other command died at once, leaving an export's temporary copies beside the images.
        with sigterm_as_interrupt():
            app()
    finally:
        # Exit only once the decode helpers have: nothing of imgtag outlives its exit status (issue 17.19).
        from imgtag.ingest.lifeline import stop_helpers

        stop_helpers()


def entry() -> None:
    """The `imgtag` command (and `python -m imgtag`): main(), then an exit without the interpreter's teardown
    (fastexit.py: 1-2 s with an SDK loaded), once everything is written and every helper is gone."""
    try:
        main()
    except SystemExit as done:
        leave(done.code)
    except KeyboardInterrupt:
        # A Ctrl-C that no command answered: one that came while the helpers were stopped, after the command's
        # own last line. The status a shell expects after Ctrl-C, without a traceback.
        leave(last_signal().exit_code)
