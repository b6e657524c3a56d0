"""./imgtag.toml: the lowest-precedence settings (flags > environment > this file), checked key by key.

Documented in docs/config.md. Every problem is one sentence (a UsageError) naming the file and the key, with a
did-you-mean for misspelt keys, exactly as preset files report theirs.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any

FILE_NAME = "imgtag.toml"

# key -> (accepted Python types, what to call them in a message). categories also takes a list of strings.
KEYS: dict[str, str] = {
    "preset": "a preset name or file path",
    "model": "a model id",
    "provider": "a provider name",
    "lang": "a language code",
    "categories": 'a list of strings (or one "a,b,c" string)',
    "out": "a folder path",
    "models": 'tables [models."name"] with input, output, max_edge (checked by pricing/extra_models.py)',
}


class UsageError(ValueError):
    """A configuration problem to show the user as one sentence (exit 2)."""


def did_you_mean(word: str, choices: Any, cutoff: float = 0.6) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load(path: Path = Path(FILE_NAME)) -> dict[str, Any]:
    """The checked settings of `path` ({} when it does not exist)."""
    if not path.is_file():
        return {}
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path.name}: {' '.join(str(exc).split())}") from None
    settings: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in KEYS:
            raise UsageError(f"{path.name}: unknown key {key!r}{did_you_mean(key, KEYS)}; "
                             f"known keys: {', '.join(KEYS)}")
        if key == "models":
            continue  # model entries are read and checked where models are looked up
        if key == "categories" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            settings[key] = [v for v in value if v.strip()]
        elif isinstance(value, str):
            settings[key] = value
        else:
            raise UsageError(f"{path.name}: {key!r} must be {KEYS[key]}, got {' '.join(repr(value).split())[:60]}")
    return settings
