"""From a preset's validated fields to XMP property values, through the declarative table in xmp_map.toml.

No preset has code here: adding or changing a mapping is an edit to the TOML file. This module also
cleans every value so that any model output can be written into XML (no control characters, no lone
surrogates, keywords on one line).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from imgtag.store.rows import ResultRow

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Namespaces imgtag writes. Standard ones only: Dublin Core, Lightroom's hierarchical keywords (read
# by digiKam, darktable, Capture One, Immich, exiftool) and IPTC Core for the accessibility fields.
NS = {
    "dc": "http://purl.org/dc/elements/1.1/",
    "lr": "http://ns.adobe.com/lightroom/1.0/",
    "Iptc4xmpCore": "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/",
    # Only into a sidecar that already has digiKam's own tag list (export/xmp_digikam.py).
    "digiKam": "http://www.digikam.org/ns/1.0/",
}

# Property -> XMP array kind. "bag": unordered list, imgtag owns only the items it added;
# "seq": the same, ordered (digiKam's TagsList); "alt": language alternatives, imgtag owns the x-default item and
# the --lang item.
PROPERTIES: dict[str, str] = {
    "dc:title": "alt",
    "dc:description": "alt",
    "dc:subject": "bag",
    "dc:language": "bag",
    "lr:hierarchicalSubject": "bag",
    "Iptc4xmpCore:AltTextAccessibility": "alt",
    "Iptc4xmpCore:ExtDescrAccessibility": "alt",
    "digiKam:TagsList": "seq",
}

# XML 1.0 forbids C0 controls except tab/LF/CR, lone surrogates and U+FFFE/U+FFFF; C1 controls and DEL
# are legal but no reader shows them usefully, so they go too. Model output can contain any of these.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Target:
    to: str
    parent: str | None = None
    translated: bool = True


@dataclass
class XmpValues:
    """What one image contributes: bag items per property, and one text per language-alternative property."""

    bags: dict[str, list[str]] = field(default_factory=dict)
    alts: dict[str, str] = field(default_factory=dict)
    untranslated: set[str] = field(default_factory=set)  # alt properties not in the --lang language

    def is_empty(self) -> bool:
        return not any(self.bags.values()) and not self.alts


def clean_text(text: str) -> str:
    """Text fit for an XML text node: forbidden characters removed, line endings normalised, trimmed."""
    return _NOT_XML.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()


def clean_keyword(text: str) -> str:
    """A keyword: clean text on one line, runs of white space collapsed to one space."""
    return _SPACES.sub(" ", clean_text(text)).strip()


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    raw = resources.files("imgtag.export").joinpath("xmp_map.toml").read_text(encoding="utf-8")
    return tomllib.loads(raw)


def _parse_targets(spec: dict[str, Any]) -> dict[str, list[Target]]:
    out: dict[str, list[Target]] = {}
    for name, targets in spec.items():
        if name == "skip":
            continue
        parsed = [Target(t["to"], t.get("parent"), t.get("translated", True)) for t in targets]
        for t in parsed:
            if t.to not in PROPERTIES:
                raise ValueError(f"xmp_map.toml: {name}: unknown XMP property {t.to!r}")
        out[name] = parsed
    return out


@lru_cache(maxsize=32)  # called once per image; the table never changes while we run
def mapping_for(preset: str | None) -> dict[str, list[Target]]:
    """Field name -> XMP targets for a preset (its own section, else the by-name default)."""
    table = _table()
    section = table.get("preset", {}).get(preset or "")
    return _parse_targets(section if section is not None else table["default"])


def skipped_fields(preset: str) -> list[str]:
    """Fields a built-in preset leaves out of XMP on purpose."""
    return list(_table().get("preset", {}).get(preset, {}).get("skip", []))


def _texts(value: Any) -> list[str]:
    if value is None or isinstance(value, bool):
        return []  # a bare true/false says nothing as a keyword or a caption
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _texts(v)]
    if isinstance(value, dict):
        return []
    return [str(value)]


def values_for(preset: str | None, fields: dict[str, Any]) -> XmpValues:
    """The XMP values for one image's fields; order is the fields' order, duplicates dropped."""
    out = XmpValues()
    for name, targets in mapping_for(preset).items():
        texts = _texts(fields.get(name))
        for target in targets:
            kind = PROPERTIES[target.to]
            if kind != "alt":
                items = out.bags.setdefault(target.to, [])
                for text in texts:
                    item = clean_keyword(text)
                    if target.parent:
                        # "|" separates hierarchy levels; inside a value it would invent a level.
                        item = f"{target.parent}|{item.replace('|', '/')}" if item else ""
                    if item and item.casefold() not in {i.casefold() for i in items}:
                        items.append(item)
            else:
                text = clean_text("\n".join(texts))
                if text and target.to not in out.alts:
                    out.alts[target.to] = text
                    if not target.translated:
                        out.untranslated.add(target.to)
    out.bags = {k: v for k, v in out.bags.items() if v}
    return out


def rows_with_values(rows: Iterable[ResultRow], default_preset: str | None) -> Iterator[tuple[ResultRow, XmpValues]]:
    """The ok rows that have an original to describe and something to write into it, with their values."""
    for row in rows:
        if row.status != "ok" or not row.fields or not row.source_path:
            continue
        values = values_for(row.preset or default_preset, row.fields)
        if not values.is_empty():
            yield row, values
