"""Column headers for people: a preset's field titles and imgtag's own column titles in the output language.

Used by results.xlsx when the run has a --lang that titles exist for (the built-in presets have them for
the languages in column_titles.toml); other languages, English included, keep the machine names. The match
goes from the exact tag to its language: "zh-cn" -> "zh", "pt-br" -> "pt", and Traditional Chinese
("zh-tw", "zh-hk", "zh-hant...") -> "zh-hant".
"""

from __future__ import annotations

import sys
from functools import cache
from importlib import resources

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_TRADITIONAL = ("hant", "tw", "hk", "mo")


def _candidates(lang: str) -> list[str]:
    code = lang.strip().replace("_", "-").lower()
    parts = code.split("-")
    out = [code]
    if parts[0] == "zh" and len(parts) > 1:
        out.append("zh-hant" if any(p in _TRADITIONAL for p in parts[1:]) else "zh")
    out.append(parts[0])
    return out


def language_key(lang: str | None, available: object) -> str | None:
    """The key of ``available`` (a mapping or set of language tags) that serves ``lang``, or None."""
    if not lang:
        return None
    return next((key for key in _candidates(lang) if key in available), None)  # type: ignore[operator]


def header_titles(titles: dict[str, dict[str, str]] | None, lang: str | None) -> dict[str, str]:
    """Field -> header text in ``lang`` from a preset's titles ({} when it has none for that language)."""
    titles = titles or {}
    key = language_key(lang, titles)
    return dict(titles[key]) if key is not None else {}


@cache
def _own() -> dict[str, dict[str, str]]:
    raw = resources.files("imgtag.export").joinpath("column_titles.toml").read_text(encoding="utf-8")
    return tomllib.loads(raw)


def own_titles(lang: str | None) -> dict[str, str]:
    """imgtag's own columns (path, status, tokens, cost ...) -> header text in ``lang``."""
    return header_titles(_own(), lang)
