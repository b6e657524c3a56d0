"""Exporters: turn a stream of ResultRow objects into the files users' tools read.

Adding a format is one module exposing an ``Exporter`` plus one line in ``EXPORTER_PATHS``.

Importing this package is cheap on purpose: the CLI checks ``--format`` before anything else loads, and a
configuration error must be reported in a fraction of a second (bench/startup.py). So exporter modules
(pyarrow, lxml, exiftool, xlsxwriter behind them) load on the first lookup in ``EXPORTERS``, and optional
extras are checked without importing them.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imgtag.export.rows import ExportContext, Exporter, ResultRow

__all__ = ["DEFAULT_FORMATS", "EXPORTERS", "ExportContext", "Exporter", "ResultRow", "parse_formats"]

# Format name (as given to --format) -> "module:function" of its exporter. Insertion order is the order listed
# in help and error messages.
EXPORTER_PATHS: dict[str, str] = {
    "csv": "imgtag.export.results:write_csv",
    "jsonl": "imgtag.export.results:write_jsonl",
    "xmp": "imgtag.export.xmp_sidecar:write_xmp",
    "xmp-embed": "imgtag.export.xmp_embed:write_xmp_embed",
    "xlsx": "imgtag.export.xlsx:write_xlsx",
    "parquet": "imgtag.export.parquet:write_parquet",
    "metadata-jsonl": "imgtag.export.hf_metadata:write_metadata_jsonl",
    "txt": "imgtag.export.captions:write_txt",
    "json-sidecar": "imgtag.export.json_sidecar:write_json_sidecars",
    "html": "imgtag.export.contact_sheet:write_contact_sheet",
}

# Formats written as one file in --out (the rest go beside the images), and that file's name.
FOLDER_FILES: dict[str, str] = {"csv": "results.csv", "jsonl": "results.jsonl", "xlsx": "results.xlsx",
                                "parquet": "results.parquet", "html": "contact-sheet.html"}


class _LazyExporters(Mapping[str, "Exporter"]):
    """Format name -> exporter function, each module imported on its first lookup."""

    def __init__(self, paths: dict[str, str]) -> None:
        self._paths = paths
        self._loaded: dict[str, Exporter] = {}

    def __getitem__(self, name: str) -> Exporter:
        if name not in self._loaded:
            module, _, function = self._paths[name].partition(":")
            self._loaded[name] = getattr(importlib.import_module(module), function)
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


EXPORTERS: Mapping[str, Exporter] = _LazyExporters(EXPORTER_PATHS)

PARQUET_HINT = "the parquet format needs pyarrow: pip install 'imgtag[parquet]'"


def _pyarrow_installed() -> bool:
    # find_spec, not import: pyarrow takes a quarter of a second to import, and only writing the file needs it.
    try:
        return importlib.util.find_spec("pyarrow") is not None
    except (ImportError, ValueError):
        return False


def _exiftool_installed() -> bool:
    from imgtag.export.exiftool import find_exiftool

    return find_exiftool() is not None


def _missing_exiftool() -> str:
    from imgtag.export.exiftool import missing_exiftool

    return missing_exiftool()


# Formats that need an optional extra: name -> (is it installed?, the sentence saying how to get it).
REQUIRES: dict[str, tuple[Callable[[], bool], Callable[[], str]]] = {
    "parquet": (_pyarrow_installed, lambda: PARQUET_HINT),
    "xmp-embed": (_exiftool_installed, _missing_exiftool),
}

DEFAULT_FORMATS = "csv,jsonl"


def parse_formats(spec: str) -> list[str]:
    """Parse a ``--format`` value such as ``"csv,jsonl"`` into known format names.

    Names are case-insensitive, surrounding spaces are ignored and repeats are dropped (each
    format is written once). Unknown or missing names, and formats whose optional extra is not
    installed, raise ValueError with a one-line message
    listing the valid ones, fit to show the user as-is.
    """
    valid = ", ".join(EXPORTER_PATHS)
    names: list[str] = []
    for raw in spec.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        if name not in EXPORTER_PATHS:
            from imgtag.config.tomlfile import did_you_mean  # only on this error: --help stays light

            raise ValueError(f"unknown export format {raw.strip()!r}{did_you_mean(name, EXPORTER_PATHS)}; "
                             f"valid formats: {valid}")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"no export format given; valid formats: {valid}")
    for name in names:
        if name in REQUIRES and not REQUIRES[name][0]():
            raise ValueError(REQUIRES[name][1]())
    return names


def __getattr__(name: str) -> Any:
    """ExportContext, Exporter and ResultRow, imported on first use (export.rows pulls in the store's rows)."""
    if name in ("ExportContext", "Exporter", "ResultRow"):
        from imgtag.export import rows

        return getattr(rows, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
