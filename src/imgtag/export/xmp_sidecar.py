"""The `xmp` format: one XMP sidecar beside each tagged image, merged into any sidecar already there.

Naming: ``photo.jpg.xmp`` by default (digiKam, darktable, Immich), ``photo.xmp`` with ``--xmp-name
stem`` (Lightroom, Capture One). An existing sidecar under either name is merged into, never replaced.
A stem name is only used when no other image in the folder has the same stem: ``a.jpg`` and ``a.png``
would otherwise share ``a.xmp``, so such images get full names (and the user is told).
The original images are only ever read (stat and directory listing), never opened for writing.
"""

from __future__ import annotations

import os
from collections import Counter, OrderedDict
from collections.abc import Iterable
from pathlib import Path

from imgtag.export.atomic import atomic_write_bytes
from imgtag.export.rows import ExportContext, ResultRow
from imgtag.export.xmp_doc import XmpError, failed_note, kept_note, merge
from imgtag.export.xmp_map import rows_with_values
from imgtag.ingest.sidecars import IMAGE_EXTENSIONS

KIND = "sidecar"
SIDECAR_SUFFIX = ".xmp"

# Only files that are images in their own right share a sidecar when they share a stem (ingest/sidecars.py's
# IMAGE_EXTENSIONS); captions (.txt), JSON sidecars and editor files (.pp3, .dop) share stems by design.
_DIR_CACHE = 64  # folders whose listing is kept (rows arrive grouped by folder, in discovery order)
_EXAMPLES = 3  # file names quoted in one note


class StemIndex:
    """For each folder, how many image files share each stem (case-insensitively), from one listing."""

    def __init__(self) -> None:
        self._dirs: OrderedDict[str, dict[str, int]] = OrderedDict()

    def shared(self, path: Path) -> bool:
        folder = str(path.parent)
        counts = self._dirs.get(folder)
        if counts is None:
            counts = {}
            try:
                names = os.listdir(folder)
            except OSError:
                names = []
            for name in names:
                stem, dot, ext = name.rpartition(".")
                if dot and stem and f".{ext.casefold()}" in IMAGE_EXTENSIONS:
                    counts[stem.casefold()] = counts.get(stem.casefold(), 0) + 1
            self._dirs[folder] = counts
            if len(self._dirs) > _DIR_CACHE:
                self._dirs.popitem(last=False)
        else:
            self._dirs.move_to_end(folder)
        own = 1 if path.suffix.casefold() in IMAGE_EXTENSIONS else 0
        return counts.get(path.stem.casefold(), 0) > own


def sidecar_path(source: Path, mode: str, stems: StemIndex) -> tuple[Path, bool]:
    """(the sidecar for ``source``, whether a wanted stem name was given up because the stem is shared)."""
    full = source.with_name(source.name + SIDECAR_SUFFIX)
    stem = source.with_name(source.stem + SIDECAR_SUFFIX)
    if not source.suffix:  # "photo" (no extension): both rules give photo.xmp
        return full, False
    shared = stems.shared(source)
    if mode == "stem":
        if shared:
            return full, True
        if stem.exists() or not full.exists():
            return stem, False
        return full, False  # merge into the existing full-name sidecar rather than start a second one
    if full.exists() or shared or not stem.exists():
        return full, False
    return stem, False  # an existing photo.xmp of this image (and of no other): merge into it


def write_xmp(rows: Iterable[ResultRow], ctx: ExportContext) -> list[Path]:
    """Write or merge one sidecar per ok image; failures are recorded per image and summarised in notes."""
    stems = StemIndex()
    ledger = ctx.xmp_ledger
    written: list[Path] = []
    merged_into = 0
    renamed: list[str] = []
    failed: list[tuple[str, str]] = []
    kept: Counter[str] = Counter()
    kept_in = 0
    for row, values in rows_with_values(rows, ctx.preset):
        source = Path(row.source_path)
        path, gave_up_stem = sidecar_path(source, ctx.xmp_name, stems)
        if gave_up_stem:
            renamed.append(row.path)
        target = str(path)
        try:
            existing = path.read_bytes() if path.exists() else None
            previous = ledger.owned(target, KIND) if ledger is not None else {}
            result = merge(existing, values, lang=ctx.lang, previous=previous, overwrite_text=ctx.xmp_overwrite_text)
            if result.data != existing:  # unchanged sidecars keep their mtime (darktable watches it)
                atomic_write_bytes(path, result.data)
        except (XmpError, OSError) as exc:
            reason = str(exc) if isinstance(exc, XmpError) else (exc.strerror or str(exc))
            failed.append((path.name, reason))
            ctx.unwritten.append(os.path.join(os.path.dirname(row.path), path.name))
            if ledger is not None:
                ledger.record_failure(target, KIND, row.source_path, reason)
            continue
        if existing is not None and previous == {} and ledger is not None:
            merged_into += 1
        if ledger is not None:
            ledger.record_ok(target, KIND, row.source_path, result.owned)
        kept.update(result.kept)
        kept_in += bool(result.kept)
        written.append(path)
    _notes(ctx, written, merged_into, renamed, failed)
    if note := kept_note("xmp", kept, kept_in, "sidecar"):
        ctx.notes.append(note)
    return written


def _notes(ctx: ExportContext, written: list[Path], merged_into: int, renamed: list[str],
           failed: list[tuple[str, str]]) -> None:
    if merged_into:
        ctx.notes.append(f"xmp: merged into {merged_into} existing sidecar(s), keeping everything else in them")
    if renamed:
        ctx.notes.append(f"xmp: {len(renamed)} image(s) share a file name stem with another image in the same "
                         f"folder, so their sidecars are named photo.jpg.xmp, not photo.xmp: "
                         + ", ".join(renamed[:_EXAMPLES]) + (" …" if len(renamed) > _EXAMPLES else ""))
    if failed:
        ctx.notes.append(failed_note("xmp", failed, "sidecar(s) not written", _EXAMPLES))
