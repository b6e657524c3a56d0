"""metadata.jsonl for Hugging Face ``imagefolder`` datasets: ``load_dataset("imagefolder", data_dir=ROOT)``.

Layout (as the datasets library expects it): one ``metadata.jsonl`` in each scanned folder, or one per
split folder (``train/``, ``test/``, ``validation/``) when the folder has them; ``file_name`` is relative to
the metadata file's folder, and each preset field is a flat column of one type. Only ok images are listed.

One type per column matters: Arrow infers types block by block, so a column that is ``null`` in the first
rows and text later fails to load. Missing optional text is written as ``""`` and missing lists as ``[]``
(numbers and booleans stay ``null``; the schema's required fields are always present).

These files live beside the images, outside --out, so they are written atomically and never over a
metadata.jsonl that imgtag did not write (see export/ledger.py): that folder is refused with a sentence
unless ``--metadata-overwrite`` is given.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from imgtag.config.options import option
from imgtag.export.atomic import atomic_write
from imgtag.export.columns import Column, coerce, field_columns
from imgtag.export.jsonline import one_line
from imgtag.export.ledger import LedgerEntry
from imgtag.export.rows import ExportContext, ResultRow

METADATA_NAME = "metadata.jsonl"
SPLITS = ("train", "test", "validation")
FORMAT = "metadata-jsonl"


@dataclass
class _Group:
    target: str
    handle: IO[str] | None  # None: refused, its rows are dropped
    digest: Any = field(default_factory=hashlib.sha256)
    rows: int = 0


def write_metadata_jsonl(rows: Iterable[ResultRow], ctx: ExportContext) -> list[Path]:
    columns = field_columns(ctx, reserved=("file_name",))
    groups: dict[str, _Group] = {}
    split_roots: dict[str, bool] = {}
    left_out = 0
    written: list[Path] = []
    with contextlib.ExitStack() as stack:
        for row in rows:
            if row.status != "ok" or not row.source_path:
                continue
            where = _placement(row, split_roots)
            if where is None:
                left_out += 1
                continue
            folder, file_name = where
            group = groups.get(folder)
            if group is None:
                group = groups[folder] = _open(folder, ctx, stack)
            if group.handle is None:
                continue
            line = _json_line(_line(file_name, row, columns))
            group.handle.write(line)
            group.digest.update(line.encode("utf-8"))
            group.rows += 1
    for group in groups.values():
        if group.handle is not None:
            ctx.ledger.put(group.target, FORMAT, LedgerEntry(group.digest.hexdigest()))
            written.append(Path(group.target))
    if left_out:
        ctx.notes.append(f"{FORMAT}: {left_out} ok images left out (outside the train/test/validation folders, "
                         "or a file name that is not valid UTF-8)")
    return written


def _placement(row: ResultRow, split_roots: dict[str, bool]) -> tuple[str, str] | None:
    """(folder of the metadata file, file_name relative to it), or None to leave the image out."""
    src = row.source_path or ""
    root = row.root
    rel = os.path.relpath(src, root) if root else ""
    if not root or rel.startswith(os.pardir + os.sep) or rel == os.pardir:
        folder, rel = os.path.dirname(src), os.path.basename(src)
    else:
        folder = root
        if root not in split_roots:
            split_roots[root] = any(os.path.isdir(os.path.join(root, s)) for s in SPLITS)
        if split_roots[root]:
            first, _, rest = rel.partition(os.sep)
            if first not in SPLITS or not rest:
                return None
            folder, rel = os.path.join(root, first), rest
    file_name = rel.replace(os.sep, "/")
    try:
        file_name.encode("utf-8")
    except UnicodeEncodeError:  # a non-UTF-8 name cannot be written in JSON text that datasets reads back
        return None
    return folder, file_name


def _open(folder: str, ctx: ExportContext, stack: contextlib.ExitStack) -> _Group:
    target = os.path.join(folder, METADATA_NAME)
    if not ctx.metadata_overwrite and _foreign(target, ctx):
        ctx.refusals.append(
            f"{target} already exists and was not written by imgtag; move it away or pass "
            f"{option('metadata_overwrite')}"
        )
        return _Group(target, None)
    try:
        handle = stack.enter_context(atomic_write(target, "w", encoding="utf-8", newline="\n"))
    except OSError as exc:  # a read-only folder: that folder only, the others are still written
        ctx.notes.append(f"{FORMAT}: cannot write {target}: {exc.strerror or exc}")
        return _Group(target, None)
    return _Group(target, handle)


def _foreign(target: str, ctx: ExportContext) -> bool:
    digest = hashlib.sha256()
    try:
        with open(target, "rb") as f:  # hashed 64 KiB at a time: a million images' file is never held whole
            while chunk := f.read(1 << 16):
                digest.update(chunk)
    except FileNotFoundError:
        return False
    entry = ctx.ledger.get(target)
    return entry is None or entry.sha256 != digest.hexdigest()


def _json_line(obj: dict[str, Any]) -> str:
    # U+2028/2029 are line breaks to str.splitlines and some JSONL readers: escaped, every line stays one line.
    return one_line(json.dumps(obj, ensure_ascii=False, allow_nan=False)) + "\n"


def _line(file_name: str, row: ResultRow, columns: list[Column]) -> dict[str, Any]:
    values = row.fields or {}
    line: dict[str, Any] = {"file_name": file_name}
    for c in columns:
        value = coerce(values.get(c.field), c.kind)
        if value is None and c.kind == "string":
            value = ""
        elif value is None and c.kind.startswith("list:"):
            value = []
        line[c.name] = value
    return line
