"""What the tag API can answer (tags, title, description in one of seven languages) mapped onto presets.

The API takes no prompt and no schema, so only presets whose fields its answer fills honestly are served:
- keywords:  title -> title, description -> description, tags -> keywords (deduplicated, as many as it gave);
- alt-text:  title -> title, description -> long_description, and alt = the description when it fits the
             alt limit, else its first sentence when that fits, else the title (the API's own documentation
             uses the description as alt text and the title as the title attribute).
Answers are validated against the preset's shape only (Provider.follows_schema): the fields present, of the
right types. Counts and lengths are the API's choice, so they are kept as it gave them. ecommerce (category, colour,
style), caption (a one-sentence caption and booru tags), ocr and user preset files (their prompt and
schema would be silently ignored) are refused before anything is sent.
"""

from __future__ import annotations

import re
from typing import Any

from imgtag.config.options import option
from imgtag.presets import Preset, load_preset
from imgtag.providers.base import ConfigError, Fatal

LANGUAGES = ("en", "zh", "fr", "de", "es", "ja", "ko")
# Codes that mean exactly one of the API's languages ("zh" is answered in Simplified Chinese).
LANGUAGE_ALIASES = {"zh-cn": "zh", "zh-hans": "zh", "zh-sg": "zh"}
SERVED_PRESETS = ("keywords", "alt-text")

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")


def api_lang(lang: str | None) -> str:
    """The `lang` to send for a preset's normalised language code; ConfigError if the API has none."""
    if lang is None:
        return "en"
    code = LANGUAGE_ALIASES.get(lang, lang)
    if code not in LANGUAGES:
        raise ConfigError(f"the imagedescriber API answers only in {', '.join(LANGUAGES)}; "
                          f"{option('lang', lang)} is not one of them")
    return code


def check_preset(preset: Preset) -> None:
    """ConfigError unless the preset is a built-in this API can fill (compared by version, so a user file
    that merely borrows a built-in's name is refused too)."""
    served = preset.name in SERVED_PRESETS and load_preset(preset.name, lang=preset.lang).version == preset.version
    if not served:
        raise ConfigError(f"the imagedescriber API returns only tags, a title and a description, so it cannot "
                          f"fill the {preset.name!r} preset; use "
                          f"{' or '.join(option('preset', name) for name in SERVED_PRESETS)}")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return " ".join(str(value).split())


def _tags(value: Any) -> list[str] | None:
    if not isinstance(value, list):
        return None
    seen: set[str] = set()
    out: list[str] = []
    for item in value:
        tag = _text(item)
        if tag and tag.casefold() not in seen:
            seen.add(tag.casefold())
            out.append(tag)
    return out


def _alt(description: str | None, title: str | None, limit: int | None) -> str | None:
    if description is None or limit is None or len(description) <= limit:
        return description
    first = _SENTENCE_END.split(description, maxsplit=1)[0].strip()
    if first and len(first) <= limit:
        return first
    return title


def _limit(preset: Preset, field: str, keyword: str) -> int | None:
    value = preset.schema.get("properties", {}).get(field, {}).get(keyword)
    return int(value) if isinstance(value, int) else None


def map_answer(preset: Preset, tags: Any, title: Any, description: Any) -> dict[str, Any]:
    """The preset's fields from the API's answer; missing parts stay missing, so validation names them."""
    title_text, description_text = _text(title), _text(description)
    if preset.name == "keywords":
        fields = {"title": title_text, "description": description_text,
                  "keywords": _tags(tags)}
    elif preset.name == "alt-text":
        fields = {"alt": _alt(description_text, title_text, _limit(preset, "alt", "maxLength")),
                  "title": title_text, "long_description": description_text}
    else:  # check_preset refused it before any request; never send an answer nobody can validate
        raise Fatal(f"the imagedescriber API cannot fill the {preset.name!r} preset", error_type="config_error")
    return {name: value for name, value in fields.items() if value is not None}
