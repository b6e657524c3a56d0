"""Exporters: turn a stream of ResultRow objects into the files users' tools read.

Adding a format is one module exposing an ``Exporter`` plus one line in ``EXPORTERS``.
"""

from __future__ import annotations

from collections.abc import Callable

from imgtag.export import parquet
from imgtag.export.captions import write_txt
from imgtag.export.contact_sheet import write_contact_sheet
from imgtag.export.hf_metadata import write_metadata_jsonl
from imgtag.export.json_sidecar import write_json_sidecars
from imgtag.export.results import write_csv, write_jsonl
from imgtag.export.rows import ExportContext, Exporter, ResultRow
from imgtag.export.xlsx import write_xlsx
from imgtag.export.xmp_embed import exiftool_available, missing_exiftool_message, write_xmp_embed
from imgtag.export.xmp_sidecar import write_xmp

__all__ = ["DEFAULT_FORMATS", "EXPORTERS", "ExportContext", "Exporter", "ResultRow", "parse_formats"]

# Format name (as given to --format) -> exporter. Insertion order is the order listed in help
# and error messages.
EXPORTERS: dict[str, Exporter] = {
    "csv": write_csv,
    "jsonl": write_jsonl,
    "xmp": write_xmp,
    "xmp-embed": write_xmp_embed,
    "xlsx": write_xlsx,
    "parquet": parquet.write_parquet,
    "metadata-jsonl": write_metadata_jsonl,
    "txt": write_txt,
    "json-sidecar": write_json_sidecars,
    "html": write_contact_sheet,
}

# Formats that need an optional extra: name -> (is it installed?, the sentence saying how to get it).
REQUIRES: dict[str, tuple[Callable[[], bool], str]] = {
    "parquet": (parquet.available, parquet.INSTALL_HINT),
    "xmp-embed": (exiftool_available, missing_exiftool_message()),
}

DEFAULT_FORMATS = "csv,jsonl"


def parse_formats(spec: str) -> list[str]:
    """Parse a ``--format`` value such as ``"csv,jsonl"`` into known format names.

    Names are case-insensitive, surrounding spaces are ignored and repeats are dropped (each
    format is written once). Unknown or missing names, and formats whose optional extra is not
    installed, raise ValueError with a one-line message
    listing the valid ones, fit to show the user as-is.
    """
    valid = ", ".join(EXPORTERS)
    names: list[str] = []
    for raw in spec.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        if name not in EXPORTERS:
            raise ValueError(f"unknown export format {raw.strip()!r}; valid formats: {valid}")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"no export format given; valid formats: {valid}")
    for name in names:
        if name in REQUIRES and not REQUIRES[name][0]():
            raise ValueError(REQUIRES[name][1])
    return names
