"""Rebuild a target's output files from the store (end of a run, `imgtag export`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgtag.config.errors import UsageError
from imgtag.export import EXPORTERS, FOLDER_FILES, parse_formats, unchanged
from imgtag.export.ledger import StoreLedger
from imgtag.export.rows import ExportContext
from imgtag.store import Store, WorkKey
from imgtag.store.xmp import XmpLedger


class ExportRefused(UsageError):
    """Some output was refused (e.g. a user's own metadata.jsonl in the way); everything else was written.

    The message is one or more sentences for the user; ``written`` lists what was written anyway."""

    def __init__(self, message: str, written: list[Path], notes: list[str]) -> None:
        super().__init__(message)
        self.written = written
        self.notes = notes
        self.path_base: str | None = None  # the folder the written files' paths are relative to, when known


# Folder-level files a later run of another target would replace: copied per target (per-image formats are
# written once, where they belong).
_PER_TARGET_COPY = ("csv", "jsonl")


def write_exports(store: Store, meta: dict[str, Any], formats: str | None = None,
                  options: dict[str, Any] | None = None, notes: list[str] | None = None,
                  unwritten: list[str] | None = None, *, reviewed_only: bool = False,
                  every: bool = False, skip_unchanged: bool = False) -> list[Path]:
    """Write each format; ``options`` are ExportContext fields from the command line (txt_template,
    txt_existing, metadata_overwrite). One-line summaries of per-image formats are appended to ``notes``, the
    files a per-image format could not write to ``unwritten`` (see not_written_message).
    Rows hold current values (a person's edits over the model's answer); reviewed_only: approved images only.
    The rows are the folder's file set, the latest run's inputs (export/fileset.py); with ``every``, every file the
    folder has seen (`imgtag export --all`).

    The latest target's files go to the folder itself (results.csv, ...); another target's go to
    targets/<preset>--<model>/. Once the folder holds several targets, the latest target's results.csv/.jsonl
    are also written there, so a later run of another target never leaves them unretrievable.

    skip_unchanged (the end of a run): results.csv/.jsonl that already show exactly these rows are left as they
    are (export/unchanged.py) and still listed."""
    from imgtag.export import fileset, targets

    file_set = None if every else fileset.current(store)
    since_run = file_set.run if file_set is not None else None
    latest = store.get_meta("target")
    is_latest = latest is None or targets.key_of(latest) == targets.key_of(meta)
    out_dir = store.out_dir if is_latest else targets.target_dir(store, meta)
    written = _write(store, meta, formats, options, notes, out_dir, unwritten, reviewed_only, since_run,
                     skip_unchanged)
    if is_latest and len(targets.all_targets(store)) > 1:
        names = parse_formats(formats or meta.get("formats") or "csv,jsonl")
        copy = [name for name in names if name in _PER_TARGET_COPY]
        if copy:
            written += _write(store, meta, ",".join(copy), options, None, targets.target_dir(store, meta),
                              reviewed_only=reviewed_only, since_run=since_run, skip_unchanged=skip_unchanged)
    return written


def _write(store: Store, meta: dict[str, Any], formats: str | None, options: dict[str, Any] | None,
           notes: list[str] | None, out_dir: Path, unwritten: list[str] | None = None,
           reviewed_only: bool = False, since_run: int | None = None, skip_unchanged: bool = False) -> list[Path]:

    key = WorkKey(meta["preset_version"], meta["provider"], meta["model"])
    opts = effective_options(meta, options)
    ctx = ExportContext(out_dir=out_dir, field_names=list(meta["fields"]),
                        list_fields=set(meta.get("list_fields") or []), schema=_schema(meta),
                        ledger=StoreLedger(store.db), preset=meta.get("preset_name"), lang=meta.get("lang"),
                        provider=meta.get("provider"), model=meta.get("model"), target_date=meta.get("updated_at"),
                        xmp_ledger=XmpLedger(store.db), field_titles=_titles(meta), **opts)
    written: list[Path] = []
    for name in _thumbnails_first(parse_formats(formats or meta.get("formats") or "csv,jsonl")):
        state = None
        if name in unchanged.SKIPPABLE:
            state = unchanged.state_of(store, name, meta, opts, reviewed_only=reviewed_only, since_run=since_run)
            path = out_dir / FOLDER_FILES[name]
            if skip_unchanged and unchanged.is_current(store, path, state):
                written.append(path)
                continue
        rows = store.result_rows(key, meta["preset_name"], ctx.field_names, reviewed_only=reviewed_only,
                                 since_run=since_run)
        paths = EXPORTERS[name](rows, ctx)
        if state is not None:
            for path in paths:
                unchanged.remember(store, path, state)
        written.extend(paths)
    if notes is not None:
        notes.extend(ctx.notes)
    if unwritten is not None:
        unwritten.extend(ctx.unwritten)
    if ctx.refusals:
        raise ExportRefused(" ".join(ctx.refusals), written, ctx.notes)
    return written


_NAMED = 10  # files named in the not-written line; the rest are counted


def not_written_message(unwritten: list[str]) -> str | None:
    """The closing line when per-image files could not be written (exit 1), naming them; None when all were."""
    if not unwritten:
        return None
    from imgtag.util.words import plural

    names = ", ".join(unwritten[:_NAMED]) + (f" and {len(unwritten) - _NAMED} more" if len(unwritten) > _NAMED else "")
    them = "it" if len(unwritten) == 1 else "them"
    return (f"{plural(len(unwritten), 'file')} not written: {names} (why: see above; the results are saved, so "
            f"once that is fixed `imgtag export` writes {them})")


# Options a later `imgtag export` keeps using unless told otherwise, so a plain re-export rebuilds the same
# captions and names sidecars the same way. A permission such as metadata_overwrite (or --xmp-touch) is never
# remembered.
REMEMBERED = ("txt_template", "txt_existing", "xmp_name", "xlsx_thumbnails")


def effective_options(meta: dict[str, Any], options: dict[str, Any] | None) -> dict[str, Any]:
    """Command-line options over the ones remembered with the target, over the preset's txt_template."""
    opts = {k: v for k, v in (meta.get("export_options") or {}).items() if k in REMEMBERED and v is not None}
    opts.update({k: v for k, v in (options or {}).items() if v is not None})
    opts.setdefault("txt_template", meta.get("txt_template"))
    return opts


def remembered_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: options[k] for k in REMEMBERED if options.get(k) is not None}


def _thumbnails_first(names: list[str]) -> list[str]:
    """The contact sheet before the workbook: the workbook's small thumbnails are then made from the sheet's
    instead of decoding every original twice."""
    if "html" in names and "xlsx" in names and names.index("html") > names.index("xlsx"):
        names = [n for n in names if n != "html"]
        names.insert(names.index("xlsx"), "html")
    return names


def _titles(meta: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The preset's column titles by language: stored with the target since they were added there; for older
    stores, from the preset itself (titles never change an answer, so any version of it will do)."""
    if "titles" in meta:
        return dict(meta["titles"] or {})
    try:
        from imgtag.presets import load_preset

        return load_preset(meta["preset"]).titles
    except Exception:  # a moved or broken preset file: machine names as headers, never a failed export
        return {}


def _schema(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The preset's JSON Schema: stored with the target since it was added there; for older stores, the
    preset loaded again, used only if it is still the same version (else columns are inferred)."""
    if meta.get("schema"):
        return dict(meta["schema"])
    try:
        from imgtag.presets import load_preset

        preset = load_preset(meta["preset"], lang=meta.get("lang"), categories=meta.get("categories"))
    except Exception:  # a moved or edited preset file: fall back to inferred columns, never fail an export
        return None
    return preset.schema if preset.version == meta["preset_version"] else None
