"""Exporters: turn a stream of ResultRow objects into the files users' tools read.

Adding a format is one module exposing an ``Exporter`` plus one line in ``EXPORTERS``.
"""

from __future__ import annotations

from imgtag.export.results import write_csv, write_jsonl
from imgtag.export.rows import ExportContext, Exporter, ResultRow
from imgtag.export.xmp_embed import write_xmp_embed
from imgtag.export.xmp_sidecar import write_xmp

__all__ = ["DEFAULT_FORMATS", "EXPORTERS", "ExportContext", "Exporter", "ResultRow", "parse_formats"]

# Format name (as given to --format) -> exporter. Insertion order is the order listed in help
# and error messages.
EXPORTERS: dict[str, Exporter] = {
    "csv": write_csv,
    "jsonl": write_jsonl,
    "xmp": write_xmp,
    "xmp-embed": write_xmp_embed,
}

DEFAULT_FORMATS = "csv,jsonl"


def parse_formats(spec: str) -> list[str]:
    """Parse a ``--format`` value such as ``"csv,jsonl"`` into known format names.

    Names are case-insensitive, surrounding spaces are ignored and repeats are dropped (each
    format is written once). Unknown or missing names raise ValueError with a one-line message
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
    return names
