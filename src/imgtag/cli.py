"""The command line. Exit codes: 0 all done, 1 finished with failures, 2 usage or configuration error."""

from __future__ import annotations

import os
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

from imgtag import __version__
from imgtag.cliparams import FastGroup
from imgtag.exits import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from imgtag.money import usd
from imgtag.screen import Lines, write_fitted

if TYPE_CHECKING:  # imported where used: `--help` and configuration errors must not pay for them (bench/startup.py)
    from typer._click import Context

    from imgtag.config import RunConfig
    from imgtag.runner import Run

ENV_HELP = ("Environment: ANTHROPIC_API_KEY (needed for paid commands), ANTHROPIC_BASE_URL (a compatible "
            "gateway); OPENAI_API_KEY, OPENAI_BASE_URL (--provider openai: OpenAI or a local server); "
            "IMAGEDESCRIBER_API_KEY, IMAGEDESCRIBER_BASE_URL, IMAGEDESCRIBER_REQUESTS_PER_MINUTE (--provider "
            "imagedescriber); IMGTAG_PRESET, IMGTAG_MODEL, IMGTAG_PROVIDER, IMGTAG_LANG, IMGTAG_CATEGORIES, "
            "IMGTAG_OUT. "
            "Lowest precedence: ./imgtag.toml (docs/config.md). Exit codes: 0 all done, 1 finished with failures "
            "or images left pending, 2 usage or configuration error.")
app = typer.Typer(cls=FastGroup, add_completion=False, no_args_is_help=True, rich_markup_mode=None, epilog=ENV_HELP,
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
DEFAULT_OUT = Path("imgtag-out")
DEFAULT_FORMATS = "csv,jsonl"
DEFAULT_CONCURRENCY = 64
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
    from imgtag.words import plural

    return plural(count, noun)


def _console(err: bool = True) -> Lines:
    """Where the CLI prints: every line fitted to the terminal, wrapped between words (screen.py)."""
    return Lines(err)


def _fail(message: str, code: int = EXIT_CONFIG) -> typer.Exit:
    # Plain text, not rich: nothing to style, and a configuration error should not wait for rich to load.
    write_fitted(sys.stderr, f"imgtag: {message}")
    sys.stderr.flush()
    return typer.Exit(code)


def _categories(value: str | list[str] | None) -> list[str] | None:
    if not value:
        return None
    if isinstance(value, list):  # a TOML list in imgtag.toml
        items = [str(item).strip() for item in value]
    elif value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise _fail(f"--categories {value}: cannot read the file ({reason})") from None
        items = [line.strip() for line in text.splitlines()]
    else:
        items = [part.strip() for part in value.replace("，", ",").split(",")]
    return [item for item in items if item and not item.startswith("#")] or None


def _config_file_defaults() -> dict[str, Any]:
    """Optional ./imgtag.toml: lowest precedence after flags and environment (docs/config.md)."""
    return _config_file_in(os.getcwd())


@lru_cache(maxsize=4)
def _config_file_in(cwd: str) -> dict[str, Any]:
    from imgtag import configfile

    try:
        return configfile.load(Path(cwd) / configfile.FILE_NAME)
    except configfile.UsageError as exc:  # a broken config file is a usage error, reported in one line
        raise _fail(str(exc)) from None


def _setting(flag: Any, env: str, file_key: str, default: Any) -> Any:
    if flag is not None:
        return flag
    if os.environ.get(env):
        return os.environ[env]
    return _config_file_defaults().get(file_key, default)


def _file_setting(flag: Any, file_key: str, default: Any) -> Any:
    """A run setting with no environment variable: the flag, else imgtag.toml, else the default."""
    return flag if flag is not None else _config_file_defaults().get(file_key, default)


def _base_url_setting(flag: str | None, provider: str | None) -> dict[str, Any]:
    """--base-url, else imgtag.toml's base_url unless the provider's own <PROVIDER>_BASE_URL variable is set
    (flags > environment > file; every built-in provider reads that variable itself)."""
    if flag:
        return {"base_url": flag}
    name = _setting(provider, "IMGTAG_PROVIDER", "provider", "anthropic")
    if os.environ.get(f"{name.upper()}_BASE_URL"):
        return {}
    url = _config_file_defaults().get("base_url")
    return {"base_url": url} if url else {}


def _server_setting(flag: str | None, meta: dict[str, Any] | None) -> dict[str, Any]:
    """The server a command about a folder's batches (`status`, `cancel`) talks to: --base-url, else the one the
    folder's latest run used (its target record), else what `run` would use (environment, imgtag.toml)."""
    if flag:
        return {"base_url": flag}
    if meta and meta.get("base_url"):
        return {"base_url": meta["base_url"]}
    return _base_url_setting(None, meta.get("provider") if meta else None)


def _out(out: Path | None) -> Path:
    """--out (or IMGTAG_OUT, which typer reads), else imgtag.toml's `out`, else ./imgtag-out."""
    return Path(_setting(out, "IMGTAG_OUT", "out", DEFAULT_OUT))


def _build_config(paths: list[str], out: Path, **kw: Any) -> RunConfig:
    from imgtag.config import RunConfig

    preset = _setting(kw.pop("preset"), "IMGTAG_PRESET", "preset", "ecommerce")
    model = _setting(kw.pop("model"), "IMGTAG_MODEL", "model", None)
    provider = _setting(kw.pop("provider"), "IMGTAG_PROVIDER", "provider", "anthropic")
    flag_lang = kw.pop("lang")
    lang = _setting(flag_lang, "IMGTAG_LANG", "lang", None)
    from imgtag.presets.language import lang_problem

    # typer reads IMGTAG_LANG into the flag's value: name the place the user has to fix
    source = ("IMGTAG_LANG" if lang and os.environ.get("IMGTAG_LANG") == lang
              else "--lang" if flag_lang is not None else "imgtag.toml lang")
    if problem := lang_problem(lang, source):
        raise _fail(problem)
    categories = _categories(_setting(kw.pop("categories"), "IMGTAG_CATEGORIES", "categories", None))
    return RunConfig(inputs=paths, out=out, preset=preset, model=model, provider=provider, lang=lang,
                     categories=categories, stdin=sys.stdin if "-" in paths else None, **kw)


def _resolve(cfg: RunConfig) -> Any:
    from imgtag.presets import PresetError
    from imgtag.pricing.extra_models import ModelConfigError
    from imgtag.providers import resolve_target
    from imgtag.providers.base import ConfigError

    try:
        return resolve_target(cfg)
    except (PresetError, ConfigError, ModelConfigError) as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot read preset: {exc}") from None


def _open_store(out: Path, *, create: bool = True, lock: bool = True) -> Any:
    """The store, or a one-line exit: busy (another writer) or missing (for read-only commands)."""
    from imgtag.store import Store, StoreBusyError

    try:
        return Store(out, create=create, lock=lock)
    except StoreBusyError as exc:
        raise _fail(str(exc)) from None
    except FileNotFoundError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:  # read-only, no space, not a folder: one sentence, no traceback
        raise _fail(f"cannot use --out {out}: {exc.strerror or exc}") from None


def _preflight(cfg: RunConfig) -> None:
    """Before anything is created or paid for: a usable --out and inputs that name at least one file."""
    from imgtag.configfile import UsageError
    from imgtag.preflight import check_inputs, check_out

    try:
        check_out(cfg.out)
        if cfg.source is None:
            check_inputs(cfg.inputs, exclude=[str(cfg.out.absolute())])
    except UsageError as exc:
        raise _fail(str(exc)) from None


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


def _xlsx_options(formats: str, thumbnails: bool | None) -> dict[str, Any]:
    """--xlsx-thumbnails: only with a workbook to put them in (exit 2 otherwise, before anything is spent)."""
    from imgtag.export import parse_formats

    if thumbnails and "xlsx" not in parse_formats(formats):
        raise _fail(f"--xlsx-thumbnails puts thumbnails in results.xlsx, but --format {formats} writes no xlsx; "
                    "add xlsx to --format")
    return {} if thumbnails is None else {"xlsx_thumbnails": thumbnails}


def _xmp_options(formats: str, xmp_name: str | None, xmp_touch: bool, overwrite_text: bool) -> dict[str, Any]:
    """Check --format (unknown names, xmp-embed without exiftool) and the XMP flags: exit 2 in one line."""
    from imgtag.export import parse_formats

    try:
        parse_formats(formats)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    options: dict[str, Any] = {}
    if xmp_name is not None:
        if xmp_name not in ("full", "stem"):
            raise _fail(f"--xmp-name must be full or stem, not {xmp_name!r}")
        options["xmp_name"] = xmp_name
    if xmp_touch:
        options["xmp_touch"] = True
    if overwrite_text:
        options["xmp_overwrite_text"] = True
    return options


def _print_written(paths: list[Path], notes: list[str], path_base: str | None = None) -> None:
    console = _console()
    if paths:
        shown = ", ".join(str(p) for p in paths[:_SHOWN_PATHS])
        more = f" and {len(paths) - _SHOWN_PATHS} more" if len(paths) > _SHOWN_PATHS else ""
        from imgtag.export import FOLDER_FILES

        holds_paths = any(p.name in FOLDER_FILES.values() for p in paths)  # files whose `path` is from the base
        base = f" (paths relative to {path_base})" if path_base and holds_paths else ""
        console.print(f"wrote {shown}{more}{base}", markup=False)
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
    from imgtag.flagcheck import number_problem
    from imgtag.request.pack_limits import check_images_per_request

    if problem := number_problem({"--min-side": min_side, "--max-megapixels": max_megapixels, "--workers": workers}):
        raise _fail(problem)
    if (problem := check_images_per_request(images_per_request)) is not None:
        raise _fail(problem)
    from imgtag.scan import scans_own

    asked = _setting(out, "IMGTAG_OUT", "out", None)
    # scan is read-only for a project: it writes only into a store it made for itself (where asked: --out,
    # IMGTAG_OUT, imgtag.toml), never into one a run made; otherwise it works in a temporary folder.
    temp = None
    if asked is None or not scans_own(Path(asked)):
        import tempfile

        temp = tempfile.TemporaryDirectory(prefix="imgtag-scan-")
        store_dir = Path(temp.name)
    else:
        store_dir = Path(asked)
    cfg = _build_config(paths, store_dir, preset=preset, model=model, provider=provider, lang=lang, categories=None,
                        min_side=min_side, max_megapixels=max_megapixels, workers=workers, detail=detail,
                        max_edge=max_edge, images_per_request=images_per_request,
                        provider_settings=_base_url_setting(None, provider))
    target = _resolve(cfg)
    _preflight(cfg)
    try:
        _scan(cfg, target, as_json)
    finally:
        if temp is not None:
            temp.cleanup()


def _scan(cfg: RunConfig, target: Any, as_json: bool) -> None:
    from imgtag.export.jsonline import json_line
    from imgtag.scan import scan as do_scan
    from imgtag.scan import summary_object

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

    from imgtag.modelcheck import check_without_sending

    note = asyncio.run(check_without_sending(cfg.provider, dict(cfg.provider_settings), target.model))
    if note:
        _console().print(f"imgtag: warning: {note}", markup=False)
    with _open_store(cfg.out) as store:
        result = asyncio.run(do_scan(cfg, store, target, emit))
    summary = summary_object(result, target)
    if as_json:
        rows_out.write(json_line(summary) + "\n")
    else:
        _print_scan_summary(console, summary)
    for arg in result.missing_args:
        _console().print(f"imgtag: nothing matched {arg!r}", markup=False)
    if result.missing_args and not summary["files"]:
        raise typer.Exit(EXIT_CONFIG)


def _print_scan_summary(console: Lines, s: dict[str, Any]) -> None:

    console.print()
    counts = ", ".join(f"{k} {v}" for k, v in sorted(s["by_status"].items()))
    console.print(f"{_n(s['files'], 'file')}: {counts}; {_n(s['distinct_images'], 'distinct image')} to tag",
                  markup=False)
    if s["by_reason"]:
        console.print("reasons: " + ", ".join(f"{k} {v}" for k, v in sorted(s["by_reason"].items())), markup=False)
    from imgtag.costview import print_estimates

    print_estimates(console, s["preset"], s["estimates"], s.get("selected_model"))


# -- run / retry -----------------------------------------------------------------------------------

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
    events: Annotated[str | None, typer.Option(
        "--events", metavar="FILE|-", help="Write the run's events as JSON lines to FILE, or - for stdout "
        "(docs/events.md).")] = None,
    prompt: Annotated[str | None, typer.Option(
        metavar="TEXT", help="A one-line task instead of a preset; the answer is one text field, answer, unless "
        "--field says otherwise (docs/config.md).")] = None,
    field: Annotated[list[str] | None, typer.Option(
        "--field", metavar="NAME:TYPE", help="With --prompt, a field of the answer (repeat); TYPE is str, int, "
        "float, bool or list (of texts).")] = None,
) -> None:
    """Tag and describe images with a model (paid).

    Resumable: run the same command again to continue after any interruption; nothing answered is asked twice."""
    mode = _file_setting(mode, "mode", "sync")
    format = _file_setting(format, "formats", DEFAULT_FORMATS)
    budget = _file_setting(budget, "budget", None)
    concurrency = _file_setting(concurrency, "concurrency", DEFAULT_CONCURRENCY)
    if mode not in ("sync", "batch"):
        raise _fail(f"--mode must be sync or batch, not {mode!r}")
    from imgtag.flagcheck import detach_problem, number_problem

    if problem := number_problem({
            "--concurrency": concurrency, "--workers": workers, "--timeout": timeout, "--max-attempts": max_attempts,
            "--budget": budget, "--price-in": price_in, "--price-out": price_out, "--min-side": min_side,
            "--max-megapixels": max_megapixels, "--batch-max-requests": batch_max_requests,
            "--batch-max-mb": batch_max_mb, "--poll-interval": poll_interval, "--ray-actors": ray_actors,
            "--ray-batch-size": ray_batch_size}) or detach_problem(detach, mode):
        raise _fail(problem)
    from imgtag.request.pack_limits import check_images_per_request

    if (problem := check_images_per_request(images_per_request)) is not None:
        raise _fail(problem)
    from imgtag.request.distributed.cluster import usage_problem

    problem = usage_problem(engine, mode, budget, ray_actors, ray_batch_size)
    if problem:
        raise _fail(problem)
    xmp_options = {**_xmp_options(format, xmp_name, xmp_touch, xmp_overwrite_text),
                   **_xlsx_options(format, xlsx_thumbnails)}
    if prompt is not None or field:
        preset = _quick_preset(prompt, field or [], preset)
    cfg = _build_config(paths, _out(out), preset=preset, model=model, provider=provider, lang=lang,
                        categories=categories, mode=mode, formats=format, dry_run=dry_run, budget=budget,
                        price_in=price_in, price_out=price_out,
                        concurrency=concurrency, workers=workers, min_side=min_side, detail=detail, max_edge=max_edge,
                        max_megapixels=max_megapixels, skip_near_duplicates=skip_near_duplicates,
                        timeout=timeout, max_attempts=max_attempts, progress=not quiet, detach=detach,
                        batch_max_requests=batch_max_requests,
                        batch_max_bytes=int(batch_max_mb * 1024 * 1024), poll_interval=poll_interval,
                        images_per_request=images_per_request,
                        provider_settings=_base_url_setting(base_url, provider),
                        export_options={**_export_options(txt_template, txt_existing, metadata_overwrite),
                                        **xmp_options},
                        engine=engine, ray_address=ray_address, work_dir=work_dir, ray_actors=ray_actors,
                        ray_batch_size=ray_batch_size)
    if events is None:
        _execute(cfg, "run")
        return
    from imgtag.events.jsonl import JsonLines
    from imgtag.events.jsonl import problem as events_problem

    if (problem := events_problem(events)) is not None:
        raise _fail(problem)
    writer = JsonLines(events)
    cfg.on_event = writer
    try:
        _execute(cfg, "run")
    finally:
        writer.close()


def _quick_preset(prompt: str | None, fields: list[str], preset: str | None) -> str:
    """--prompt (with --field): the preset string for that task (presets/quick.py); exit 2 for a bad spec."""
    from imgtag.presets import PresetError
    from imgtag.presets.quick import quick_spec

    if prompt is None:
        raise _fail("--field describes the answer to a --prompt; give --prompt too, or leave --field out")
    if preset is not None and os.environ.get("IMGTAG_PRESET") != preset:  # the flag, not the environment
        raise _fail("give --preset or --prompt, not both: --prompt is a task of its own")
    try:
        return quick_spec(prompt, fields)
    except PresetError as exc:
        raise _fail(str(exc)) from None


def _export_options(txt_template: str | None, txt_existing: str | None, metadata_overwrite: bool) -> dict[str, Any]:
    from imgtag.export.beside import EXISTING_POLICIES

    if txt_existing is not None and txt_existing not in EXISTING_POLICIES:
        raise _fail(f"--txt-existing must be one of {', '.join(EXISTING_POLICIES)}, not {txt_existing!r}")
    return {"txt_template": txt_template, "txt_existing": txt_existing,
            "metadata_overwrite": metadata_overwrite or None}


def _check_export_options(formats: str, options: dict[str, Any], fields: list[str],
                          preset_template: str | None) -> None:
    """Refuse a caption template naming no field of this preset before anything is spent or written."""
    from imgtag.export import parse_formats

    try:
        if "txt" in parse_formats(formats):
            template = options.get("txt_template") or preset_template
            if template:
                from imgtag.export.captions import check_template  # the txt writer's module: only for txt

                check_template(template, fields)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _execute(cfg: RunConfig, command: str) -> None:
    from imgtag.config import target_meta
    from imgtag.providers import open_provider
    from imgtag.providers.base import ConfigError

    target = _resolve(cfg)
    _check_export_options(cfg.formats, cfg.export_options, target.preset.fields, target.preset.txt_template)
    if (cfg.price_in is None) != (cfg.price_out is None):
        raise _fail("give both --price-in and --price-out (USD per million tokens), or neither")
    _preflight(cfg)
    provider_obj = None
    try:
        from imgtag.providers import provider_class

        cls = provider_class(cfg.provider)
        cls.check_run(cfg, target)  # what it cannot serve: exit 2, dry runs too
        if cfg.mode == "batch" and not cls.capabilities.batch:  # refused before the store exists (issue 17.5)
            raise ConfigError(f"--mode batch needs a provider with a batch API; {cfg.provider!r} has none "
                              "(use --mode sync)")
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    if cfg.budget is not None and target.model.prices is None:
        raise _fail(f"--budget cannot be enforced: the prices of {target.model.id} are unknown; set them in "
                    f"imgtag.toml ([models.\"{target.model.id}\"] input and output) or with --price-in and "
                    "--price-out (USD per million tokens; 0 for a free local model)")
    try:
        if not cfg.dry_run:
            provider_obj = open_provider(cfg)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    if provider_obj is not None and cfg.mode == "batch":
        from imgtag.providers.batch_api import batch_unavailable

        problem = batch_unavailable(provider_obj)  # one small request: a server without the API creates nothing
        if problem:
            import asyncio

            asyncio.run(provider_obj.aclose())  # its client never sent anything: closing is instant
            raise _fail(problem)
    from imgtag.interrupt import sigterm_as_interrupt

    cluster = _join_ray(cfg)  # before the store: a cluster that cannot be used creates nothing
    try:
        with _open_store(cfg.out) as store, sigterm_as_interrupt() as interruption:
            if not cfg.dry_run:
                _switch_target(store, target_meta(cfg, target), cfg.formats)
            runner = _runner_class(cfg)(cfg, store, target, provider_obj, command=command)
            import asyncio  # ~25 ms: not on the path of --help and configuration errors

            try:
                outcome = asyncio.run(_run_and_close(runner, provider_obj))
            except KeyboardInterrupt:
                raise _fail(runner.interrupted(interruption.exit_code), interruption.exit_code) from None
    finally:
        if cluster is not None:
            cluster.close()  # the run closed it already unless it stopped early; Ray's lines stop going to ray.log
    _report(outcome, cfg, target, runner.missing_args, runner.path_base)
    if runner.missing_args and outcome.summary.files == 0:
        raise typer.Exit(EXIT_CONFIG)  # nothing to do because nothing matched: a usage error
    raise typer.Exit(outcome.exit_code)


def _join_ray(cfg: RunConfig) -> Any:
    """--engine ray: reach the cluster (or start a local one) before anything is created; one sentence and
    exit 2 when it cannot be used. Says in one line where Ray's own log lines go (not to the terminal)."""
    if cfg.engine != "ray" or cfg.dry_run:
        return None
    from imgtag.request.distributed.cluster import ClusterProblem, RayMissing, connect
    from imgtag.words import plural

    try:
        conn = connect(cfg.ray_address, cfg.workers, log_dir=Path(cfg.out))
    except (ClusterProblem, RayMissing) as exc:
        raise _fail(str(exc)) from None
    if conn.address:
        where = f"joined the Ray cluster at {conn.address}"
    else:
        where = "started a local Ray cluster" if conn.started_here else "using this process's Ray cluster"
    logs = f"; Ray's own log lines go to {conn.route.path}" if conn.route.path else ""
    sys.stderr.write(f"imgtag: {where} ({plural(conn.nodes, 'node')}){logs}\n")
    sys.stderr.flush()
    return conn


def _runner_class(cfg: RunConfig) -> type[Run]:
    from imgtag.runner import Run  # only now: decoders and numpy load after every configuration check

    if cfg.engine == "ray" and not cfg.dry_run:  # Ray is imported only here, never by the default engine
        from imgtag.ray_runner import DistributedRun

        return DistributedRun
    return Run


def _switch_target(store: Any, meta: dict[str, Any], formats: str) -> None:
    """Record this run's target; when the folder's default files held another target, keep that one's files in
    targets/<preset>[-<lang>]--<model>/ first and say so, so nothing is replaced silently."""
    from imgtag.export.writer import write_exports
    from imgtag.targets import label, record, selection_flags, slug, target_dir

    previous = record(store, meta)
    if previous is None:
        return
    try:
        write_exports(store, previous, previous.get("formats") or formats)
    except ValueError:
        write_exports(store, previous, "csv,jsonl")
    kept = target_dir(store, previous)
    _console().print(f"imgtag: {_switch_words(store.out_dir, meta, previous, formats)}; the {label(previous)} "
                     f"results are kept in {kept.parent.name}/{slug(previous)}/ "
                     f"(`imgtag export {selection_flags(previous)}` rebuilds them)", markup=False)


def _switch_words(out: Path, meta: dict[str, Any], previous: dict[str, Any], formats: str) -> str:
    """What this run writes for the new target, and which files in --out still show the previous one (a message
    never claims results.csv holds a target that a --format xmp run did not write there)."""
    from imgtag.export import FOLDER_FILES, parse_formats
    from imgtag.targets import label

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


async def _run_and_close(runner: Run, provider_obj: Any) -> Any:
    try:
        from imgtag.modelcheck import check, check_without_sending

        cfg = runner.cfg
        note = (await check_without_sending(cfg.provider, dict(cfg.provider_settings), runner.target.model)
                if cfg.dry_run else await check(provider_obj, cfg.provider, runner.target.model))
        if note:
            _console().print(f"imgtag: warning: {note}", markup=False)
        return await runner.execute()
    finally:
        if provider_obj is not None:
            await provider_obj.aclose()


def _report(outcome: Any, cfg: RunConfig, target: Any, missing: list[str], path_base: str | None) -> None:
    from imgtag.progress import resume_note

    console = _console()
    for arg in missing:
        console.print(f"imgtag: nothing matched {arg!r}", markup=False)
    s = outcome.summary
    prices = target.model.prices
    if prices is not None and prices.input == prices.output == 0:  # declared free: say where, since $0 is a claim
        console.print(f"{target.model.id}: priced at $0 per million tokens ({target.model.source})", markup=False)
    if cfg.dry_run and outcome.estimator is not None:
        from imgtag.costview import dry_run_line

        console.print(dry_run_line(next(iter(outcome.estimator.totals.values()))), markup=False)
        return
    counts = ", ".join(f"{k} {v}" for k, v in sorted(s.by_status.items())) or "no files"
    console.print(f"{_n(s.files, 'file')}: {counts}; {_n(s.requests, 'request')}, "
                  f"{s.input_tokens:,} in / {s.output_tokens:,} out tokens, "
                  f"{_spent_words(s, prices is None and s.requests > 0)}",
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
        console.print("see `imgtag status` for causes; `imgtag retry` retries the failures", markup=False)


def _spent_words(s: Any, unpriced: bool) -> str:
    """The run's cost; for a credit-billed provider, where it is said (the credits line); or why it is unknown:
    some tokens were paid at prices nobody knows."""
    if s.credits_spent is not None:
        return "billed in credits"
    if s.cost_usd is None or unpriced:
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
          base_url: BaseUrlOpt = None, budget: BudgetOpt = None, concurrency: ConcurrencyOpt = None) -> None:
    """Retry failures that a new ask can fix.

    Works on the latest target (and the server it used, unless --base-url names another); says what it will
    retry, and the estimated cost, first."""
    from dataclasses import replace

    from imgtag.flagcheck import number_problem
    from imgtag.retry import estimated_cost, retry_plan

    budget = _file_setting(budget, "budget", None)
    concurrency = _file_setting(concurrency, "concurrency", DEFAULT_CONCURRENCY)
    if problem := number_problem({"--budget": budget, "--concurrency": concurrency}):
        raise _fail(problem)
    out = _out(out)
    if not (out / "imgtag.db").is_file():
        raise _fail(f"no imgtag store in {out} (run `imgtag run` first)")
    plan = retry_plan(out, progress=not quiet, force=force)
    console = _console()
    left = ", ".join(f"{k} {v}" for k, v in sorted(plan.left_out.items()))
    if plan.cfg is None:
        if plan.left_out:
            console.print(f"imgtag: nothing to retry in {out}: {_n(sum(plan.left_out.values()), 'failure')} would "
                          f"fail the same way again ({left}); `imgtag retry --all` forces them", markup=False)
        else:
            console.print(f"imgtag: no failures to retry in {out}", markup=False)
        raise typer.Exit(EXIT_OK)
    plan.cfg = replace(plan.cfg, budget=budget, concurrency=concurrency,
                       provider_settings={"base_url": base_url} if base_url else plan.cfg.provider_settings)
    target = _resolve(plan.cfg)
    cost = estimated_cost(plan, target, batch=plan.cfg.mode == "batch")
    causes = ", ".join(f"{k} {v}" for k, v in sorted(plan.retrying.items()))
    console.print(f"retrying {_n(plan.count, 'image')} ({causes}), estimated {usd(cost)}", markup=False)
    if plan.left_out:
        console.print(f"not retrying {_n(sum(plan.left_out.values()), 'image')} that would fail the same way again "
                      f"({left}); `imgtag retry --all` retries them too", markup=False)
    _execute(plan.cfg, "retry")


# -- status / export / presets -------------------------------------------------------------------

PresetSel = Annotated[str | None, typer.Option("--preset", metavar="NAME",
                                               help="Which target: preset name (default: the latest run's).")]
ModelSel = Annotated[str | None, typer.Option("--model", metavar="ID",
                                              help="Which target: model id (default: the latest run's).")]
LangSel = Annotated[str | None, typer.Option("--lang", metavar="CODE",
                                             help="Which target: output language (default: the latest run's).")]


def _select_target(store: Any, preset: str | None, model: str | None, lang: str | None) -> Any:
    from imgtag.configfile import UsageError
    from imgtag.targets import select

    try:
        return select(store, preset, model, lang)
    except UsageError as exc:
        raise _fail(str(exc)) from None


@app.command()
def status(out: OutOpt = None,
           as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
           preset: PresetSel = None, model: ModelSel = None, lang: LangSel = None,
           base_url: BaseUrlOpt = None) -> None:
    """Show counts, failures, tokens and spend to date.

    For one target (the latest, or --preset/--model/--lang), with live batch states when a key is set (asked of
    --base-url, else the server the latest run used)."""
    from imgtag import status as st

    out = _out(out)
    with _open_store(out, create=False, lock=False) as store:
        meta = _select_target(store, preset, model, lang)
        report = st.gather(store, meta)
        latest = store.get_meta("target")
    if report["batches"]:
        import asyncio

        # Batches are the latest run's: its provider is asked at its server (or the one --base-url names).
        servers = {latest["provider"]: _server_setting(base_url, latest)} if latest else {}
        asyncio.run(st.refresh_batches(report["batches"], servers=servers))
    if as_json:
        from imgtag.export.jsonline import json_line

        print(json_line(report))
        return
    credits = None
    if report["credits_spent"] is not None or report["credits_remaining"] is not None:
        from types import SimpleNamespace

        credits = _credits_line(SimpleNamespace(**report))
    console = _console(err=False)
    for line in st.render(report, credits):
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
    from imgtag.export.writer import ExportRefused, effective_options, remembered_options, write_exports
    from imgtag.export.writer import not_written_message as not_written_line
    from imgtag.fileset import stated_base

    options = _export_options(txt_template, txt_existing, metadata_overwrite)
    notes: list[str] = []
    unwritten: list[str] = []
    out = _out(out)
    with _open_store(out, create=False, lock=False) as store:
        meta = _select_target(store, preset, model, lang)
        if not meta:
            raise _fail(f"no results yet in {out} (run `imgtag run` first)", EXIT_FAILED)
        formats = format or meta.get("formats") or "csv,jsonl"
        options.update(_xmp_options(formats, xmp_name, xmp_touch, xmp_overwrite_text))
        options.update(_xlsx_options(formats, xlsx_thumbnails))
        _check_export_options(formats, effective_options(meta, options), list(meta["fields"]), None)
        if remembered_options(options):  # the next plain `imgtag export` builds the same captions
            meta = _remember_export_options(store, meta, remembered_options(options))
        base = stated_base(store)
        try:
            written = write_exports(store, meta, formats, options, notes, unwritten, reviewed_only=reviewed_only,
                                    every=every)
        except ExportRefused as exc:
            _print_written(exc.written, exc.notes, base)
            raise _fail(str(exc)) from None
        except ValueError as exc:
            raise _fail(str(exc)) from None
    _print_written(written, notes, base)
    if (not_written := not_written_line(unwritten)) is not None:
        raise _fail(not_written, EXIT_FAILED)


def _remember_export_options(store: Any, meta: dict[str, Any], remembered: dict[str, Any]) -> dict[str, Any]:
    """Record caption and XMP naming options with this target (its latest record and its entry among all targets)."""
    from imgtag import targets

    meta = {**meta, "export_options": {**(meta.get("export_options") or {}), **remembered}}
    records = dict(store.get_meta("targets") or {})
    if targets.slug(meta) in records:
        records[targets.slug(meta)] = meta
        store.set_meta("targets", records)
    latest = store.get_meta("target")
    if latest is not None and targets.key_of(latest) == targets.key_of(meta):
        store.set_meta("target", {**latest, "export_options": meta["export_options"]})
    return meta


@app.command()
def review(out: OutOpt = None,
           preset: PresetSel = None, model: ModelSel = None, lang: LangSel = None,
           port: Annotated[int | None, typer.Option(
               "--port", metavar="N", show_default=False,
               help="Port to listen on.  [default: 8420, else a free one]")] = None,
           host: Annotated[str, typer.Option("--host", metavar="ADDR",
                                             help="Address to listen on (anything but loopback warns).")] = "127.0.0.1",
           no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser.")] = False) -> None:
    """Check, edit and approve results in a local page (docs/review.md).

    Prints the page's address with its access token first; Ctrl-C stops it. Edits are kept in the store beside
    the model's answers and reach every export; it can run while `imgtag run` works on the same --out."""
    if port is not None and not 0 <= port <= 65535:
        raise _fail(f"--port must be from 0 to 65535, not {port}")
    out = _out(out)
    with _open_store(out, create=False, lock=False) as store:  # migrates an older store; no folder lock
        meta = _select_target(store, preset, model, lang)
    if not meta:
        raise _fail(f"no results yet in {out} (run `imgtag run` first)", EXIT_FAILED)
    from imgtag.review.serve import ServeError, serve

    try:
        serve(out, meta, host=host, port=port, open_browser=not no_browser,
              say=lambda line: print(line, flush=True), warn=lambda line: print(line, file=sys.stderr, flush=True))
    except ServeError as exc:
        raise _fail(str(exc)) from None


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

    raise typer.Exit(cancel_batches(_out(out), server=lambda meta: _server_setting(base_url, meta)))


@app.command()
def prune(out: OutOpt = None,
          yes: Annotated[bool, typer.Option("--yes", help="Remove them (without it, only say what would go).")] = False,
          ) -> None:
    """Remove files that no longer exist on disk from the store.

    Says first what would go: the count and a few paths (a dry run; --yes removes them). Files on disk are never
    touched; answers stay for copies and for the same image added again (docs/store.md)."""
    from imgtag import prune as pr

    out = _out(out)
    with _open_store(out, create=False) as store:  # the folder lock: never beside a run into the same --out
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
        print(f"imgtag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Show the version and exit.")] = False) -> None:
    """imgtag: tag and describe folders of images with vision-language models."""


def main() -> None:
    try:
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
        from imgtag.fastexit import leave

        leave(done.code)
