"""What an output folder holds, as functions: `status` (a report), `export` (the files rebuilt from the store),
the result rows themselves and the review of them, each for one target (the latest, or the one a preset, model
and language name)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgtag.app.run import open_store
from imgtag.app.settings import Settings
from imgtag.config.errors import UsageError
from imgtag.config.exits import EXIT_FAILED

if TYPE_CHECKING:
    from imgtag.review.service import Review
    from imgtag.store import Store
    from imgtag.store.rows import ResultRow


def select_target(store: Store, preset: str | None, model: str | None, lang: str | None) -> dict[str, Any] | None:
    """The latest target matching these (None: the latest of all); UsageError when none matches."""
    from imgtag.export.targets import select

    return select(store, preset, model, lang)


def status_report(out: Path, settings: Settings | None = None, *, preset: str | None = None,
                  model: str | None = None, lang: str | None = None, base_url: str | None = None,
                  refresh_batches: bool = True) -> dict[str, Any]:
    """`imgtag status --json`'s object: counts, failures, tokens and spend to date, and live batch states, asked
    of `base_url`, else the server the folder's latest run used (batches are the latest run's)."""
    from imgtag.app import status
    from imgtag.store.db import writable

    # A store the user may only read (a backup, a colleague's share) is read as it is: status writes nothing.
    with open_store(out, create=False, lock=False, read_only=not writable(out)) as store:
        report = status.gather(store, select_target(store, preset, model, lang))
        latest = store.get_meta("target")
    if report["batches"] and refresh_batches:
        import asyncio

        chosen = settings if settings is not None else Settings.load()
        servers = {latest["provider"]: chosen.server(base_url, latest)} if latest else {}
        asyncio.run(status.refresh_batches(report["batches"], servers=servers))
    return report


def no_results(out: Path) -> UsageError:
    return UsageError(f"no results yet in {out} (run `imgtag run` first)", exit_code=EXIT_FAILED)


@dataclass
class Exported:
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # per-image formats' one-line summaries
    not_written: str | None = None  # the files a per-image format could not write, named (exit 1)
    path_base: str | None = None  # the folder every row's `path` is relative to


def export(out: Path, *, formats: str | None = None, txt_template: str | None = None,
           txt_existing: str | None = None, metadata_overwrite: bool = False, xmp_name: str | None = None,
           xmp_touch: bool = False, xmp_overwrite_text: bool = False, xlsx_thumbnails: bool | None = None,
           reviewed_only: bool = False, preset: str | None = None, model: str | None = None,
           lang: str | None = None, every: bool = False) -> Exported:
    """Rebuild a target's files from the store, written atomically, asking no model. An output file in the way
    is an ExportRefused (a UsageError) holding what was written anyway."""
    from imgtag.app.export_options import check_export_options, export_options, xlsx_options, xmp_options
    from imgtag.export.fileset import stated_base
    from imgtag.export.writer import ExportRefused, effective_options, remembered_options, write_exports
    from imgtag.export.writer import not_written_message as not_written_line

    options = export_options(txt_template, txt_existing, metadata_overwrite)
    done = Exported()
    unwritten: list[str] = []
    with open_store(out, create=False, lock=False) as store:
        meta = select_target(store, preset, model, lang)
        if not meta:
            raise no_results(out)
        chosen = formats or meta.get("formats") or "csv,jsonl"
        options.update(xmp_options(chosen, xmp_name, xmp_touch, xmp_overwrite_text))
        options.update(xlsx_options(chosen, xlsx_thumbnails))
        check_export_options(chosen, effective_options(meta, options), list(meta["fields"]), None)
        if remembered_options(options):  # the next plain `imgtag export` builds the same captions
            meta = _remember_export_options(store, meta, remembered_options(options))
        done.path_base = stated_base(store)
        try:
            done.written = write_exports(store, meta, chosen, options, done.notes, unwritten,
                                         reviewed_only=reviewed_only, every=every)
        except ExportRefused as exc:  # its sentence, and what was written anyway
            exc.path_base = done.path_base
            raise
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    done.not_written = not_written_line(unwritten)
    return done


def _remember_export_options(store: Store, meta: dict[str, Any], remembered: dict[str, Any]) -> dict[str, Any]:
    """Record caption and XMP naming options with this target (its latest record and its entry among all targets)."""
    from imgtag.export import targets

    meta = {**meta, "export_options": {**(meta.get("export_options") or {}), **remembered}}
    records = dict(store.get_meta("targets") or {})
    if targets.slug(meta) in records:
        records[targets.slug(meta)] = meta
        store.set_meta("targets", records)
    latest = store.get_meta("target")
    if latest is not None and targets.key_of(latest) == targets.key_of(meta):
        store.set_meta("target", {**latest, "export_options": meta["export_options"]})
    return meta


def result_rows(out: Path, *, preset: str | None = None, model: str | None = None, lang: str | None = None,
                every: bool = False) -> Iterator[ResultRow]:
    """The rows of the results contract for one target, as every export sees them (current values: a person's
    edits over the model's answer), streamed; the latest run's inputs, or every file the folder has seen."""
    from imgtag.export import fileset
    from imgtag.export.targets import key_of

    with open_store(out, create=False, lock=False) as store:
        meta = select_target(store, preset, model, lang)
        if not meta:
            raise no_results(out)
        file_set = None if every else fileset.current(store)
        yield from store.result_rows(key_of(meta), meta["preset_name"], list(meta["fields"]),
                                     since_run=file_set.run if file_set is not None else None)


def review_target(out: Path, *, preset: str | None = None, model: str | None = None,
                  lang: str | None = None) -> tuple[dict[str, Any], Review]:
    """One target of a folder open for review (its record, and the service the page's JSON API and the Python
    API call), over a connection of its own that never takes the folder lock: `imgtag run` can write meanwhile.
    An older store is migrated first."""
    from imgtag.review.service import Review
    from imgtag.store.db import DB_NAME
    from imgtag.store.review import open_connection

    with open_store(out, create=False, lock=False) as store:
        meta = select_target(store, preset, model, lang)
    if not meta:
        raise no_results(out)
    return meta, Review(open_connection(out / DB_NAME), meta)
