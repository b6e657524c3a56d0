"""Helpers for the XMP tests: rows and contexts without a model, and exiftool as the reader users have."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from PIL import Image

from imgtag.export.rows import ExportContext, ResultRow
from imgtag.store import Store
from imgtag.store.xmp import XmpLedger

DATA = Path(__file__).parent / "data" / "xmp"


def exiftool(*args: str | Path) -> list[dict[str, Any]]:
    exe = shutil.which("exiftool")
    assert exe, "exiftool is needed to check XMP output (.ci/system-deps installs libimage-exiftool-perl)"
    done = subprocess.run([exe, "-j", "-G1", "-struct", *map(str, args)], capture_output=True, check=False)
    assert done.stdout, done.stderr.decode()
    return json.loads(done.stdout.decode("utf-8"))


def tags(path: Path, *names: str) -> dict[str, Any]:
    """exiftool's reading of a file (System and ExifTool groups dropped: they describe the file, not metadata)."""
    data = exiftool(*names, path)[0]
    return {k: v for k, v in data.items() if not k.startswith(("System:", "ExifTool:", "SourceFile"))}


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def row(source: Path, fields: dict[str, Any], preset: str = "keywords", display: str | None = None) -> ResultRow:
    return ResultRow(path=display or source.name, sha256="0" * 64, status="ok", fields=fields, error=None,
                     model="m", preset=preset, preset_version="v", provider="p", usage=None, cost_usd=None,
                     source_path=str(source))


def context(store: Store, **options: Any) -> ExportContext:
    return ExportContext(out_dir=store.out_dir, field_names=[], xmp_ledger=XmpLedger(store.db), **options)


def photo(folder: Path, name: str = "photo.jpg") -> Path:
    """A small JPEG to write XMP for."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    Image.new("RGB", (64, 48), (120, 30, 200)).save(path)
    return path
