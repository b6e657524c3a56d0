"""./imgtag.toml: the lowest-precedence settings (flags > environment > this file), checked key by key.

Documented in docs/config.md. Every problem is one sentence (a ConfigurationError) naming the file and the key, with a
did-you-mean for misspelt keys, exactly as preset files report theirs.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imgtag.config.errors import ConfigurationError, UsageError

__all__ = ["FILE_NAME", "KEYS", "ConfigurationError", "UsageError", "did_you_mean", "load"]

FILE_NAME = "imgtag.toml"

# key -> (accepted Python types, what to call them in a message). categories also takes a list of strings.
KEYS: dict[str, str] = {
    "preset": "a preset name or file path",
    "model": "a model id",
    "provider": "a provider name",
    "lang": "a language code",
    "categories": 'a list of strings (or one "a,b,c" string)',
    "out": "a folder path",
    "base_url": "a URL (http://... or https://...)",
    "mode": "sync or batch",
    "formats": 'a list of export formats (or one "csv,xlsx" string)',
    "concurrency": "a whole number of at least 1",
    "budget": "an amount in USD above 0",
    "models": 'tables [models."name"] with input, output, max_edge (checked by pricing/extra_models.py)',
}




def did_you_mean(word: str, choices: Any, cutoff: float = 0.6) -> str:
    # Two swapped letters are the commonest typo and difflib ranks them low ('modle' is nearer 'mode' than
    # 'model' to it): a choice with exactly the same letters wins first.
    swapped = [c for c in sorted(choices) if c != word and sorted(c) == sorted(word)]
    close = swapped[:1] or difflib.get_close_matches(word, sorted(choices), n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""


# Checks an export format list ("csv,jsonl"), raising ValueError with a sentence that lists the valid ones: the
# export registry's parse_formats, passed in by the settings path (app/settings.py), since config/ sits below the
# stages and imports none of them.
FormatCheck = Callable[[str], object]


def load(path: Path = Path(FILE_NAME), *, check_formats: FormatCheck) -> dict[str, Any]:
    """The checked settings of `path` ({} when it does not exist)."""
    return read(path, check_formats=check_formats)[0]


def read(path: Path, *, check_formats: FormatCheck) -> tuple[dict[str, Any], Any]:
    """The checked settings of `path` and its raw [models] table (None without one), which pricing checks
    entry by entry when a model is looked up (pricing/extra_models.py). Nothing when the file does not exist."""
    if not path.is_file():
        return {}, None
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{path.name}: {' '.join(str(exc).split())}") from None
    settings: dict[str, Any] = {}
    models: Any = None
    for key, value in raw.items():
        if key not in KEYS:
            raise ConfigurationError(f"{path.name}: unknown key {key!r}{did_you_mean(key, KEYS)}; "
                             f"known keys: {', '.join(KEYS)}")
        if key == "models":
            models = value  # model entries are checked where models are looked up
            continue
        checked = _checked(key, value, check_formats)
        if checked is None:
            shown = " ".join(repr(value).split())[:60]
            raise ConfigurationError(f"{path.name}: {key!r} must be {KEYS[key]}, got {shown}")
        settings[key] = checked
    return settings, models


def _checked(key: str, value: Any, check_formats: FormatCheck) -> Any:
    """The setting as the command line would take it, or None when `value` is not what `key` needs.
    Raises ConfigurationError for an export format name that does not exist (its message lists the valid ones)."""
    strings = isinstance(value, list) and all(isinstance(v, str) for v in value)
    if key == "categories" and strings:
        return [v for v in value if v.strip()]
    if key == "formats" and (strings or isinstance(value, str)):
        text = ",".join(value) if isinstance(value, list) else value
        try:
            check_formats(text)
        except ValueError as exc:
            raise ConfigurationError(f"{FILE_NAME}: 'formats': {exc}") from None
        return text
    if key == "concurrency":
        return value if type(value) is int and value >= 1 else None  # bool is an int: type() excludes it
    if key == "budget":
        number = type(value) in (int, float) and value == value and value > 0
        return float(value) if number else None
    if not isinstance(value, str):
        return None
    if key == "mode":
        return value if value in ("sync", "batch") else None
    if key == "base_url":
        return value if value.startswith(("http://", "https://")) else None
    return value
