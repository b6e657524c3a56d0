"""digiKam's own tag list: when a sidecar already has ``digiKam:TagsList``, digiKam reads it before ``dc:subject``
and ``lr:hierarchicalSubject``, so tags imgtag put only in those would not show. Such a sidecar gets our tags in
its TagsList too, written the way digiKam writes them: a hierarchical item as a path (``Category/shoes``), a
keyword that is the leaf of one of those paths as the path only, other keywords as top-level tags. A sidecar
without a TagsList gets none: the standard properties are what every other tool reads.
"""

from __future__ import annotations

from dataclasses import replace

from imgtag.export.xmp_map import XmpValues

TAGSLIST = "digiKam:TagsList"
_LEVEL_SLASH = "\u2215"  # DIVISION SLASH: looks like "/", but does not split a tag into levels


def _level(text: str) -> str:
    return text.replace("/", _LEVEL_SLASH)


def with_tagslist(values: XmpValues) -> XmpValues:
    """``values`` plus digiKam TagsList items derived from its keywords and hierarchical keywords."""
    paths = values.bags.get("lr:hierarchicalSubject", [])
    leaves = {item.rsplit("|", 1)[-1].casefold() for item in paths}
    flat = [_level(k) for k in values.bags.get("dc:subject", []) if k.casefold() not in leaves]
    items = flat + ["/".join(_level(level) for level in item.split("|")) for item in paths]
    if not items:
        return values
    return replace(values, bags={**values.bags, TAGSLIST: items})
