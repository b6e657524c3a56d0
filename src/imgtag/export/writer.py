"""Rebuild a target's output files from the store (end of a run, `imgtag export`)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from imgtag.export import EXPORTERS, parse_formats
from imgtag.export.rows import ExportContext
from imgtag.store import Store, WorkKey
from imgtag.store.xmp import XmpLedger


def write_exports(store: Store, meta: dict[str, Any], formats: str | None = None,
                  options: dict[str, Any] | None = None, notes: list[str] | None = None) -> list[Path]:
    """Write each format; ``options`` are ExportContext fields from flags (e.g. xmp_name); exporters'
    one-line messages for the user are appended to ``notes``."""
    key = WorkKey(meta["preset_version"], meta["provider"], meta["model"])
    ctx = ExportContext(out_dir=store.out_dir, field_names=list(meta["fields"]),
                        list_fields=set(meta.get("list_fields") or []), preset=meta.get("preset_name"),
                        lang=meta.get("lang"), xmp_ledger=XmpLedger(store.db),
                        notes=notes if notes is not None else [],
                        # flags given now win over the ones the run was started with
                        **_known_options({**(meta.get("export_options") or {}), **(options or {})}))
    written: list[Path] = []
    for name in parse_formats(formats or meta.get("formats") or "csv,jsonl"):
        written.extend(EXPORTERS[name](store.result_rows(key, meta["preset_name"], ctx.field_names), ctx))
    return written


def _known_options(options: dict[str, Any]) -> dict[str, Any]:
    # A store written by a newer imgtag may remember options this version does not have.
    names = {f.name for f in fields(ExportContext)}
    return {k: v for k, v in options.items() if k in names}
