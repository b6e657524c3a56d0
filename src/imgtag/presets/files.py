"""Read a preset file (TOML or YAML) into a plain dict, turning every failure into one PresetError line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from imgtag.presets.errors import PresetError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

SUFFIXES = (".toml", ".yaml", ".yml")


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def read_preset_file(path: Path, label: str) -> dict[str, Any]:
    """The file's top-level mapping. label is how the file is named in messages (the path as given)."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        kind = suffix or "(none)"
        raise PresetError(f"{label}: unsupported preset file type {kind!r}; use .toml, .yaml or .yml")
    try:
        # utf-8-sig: editors on Windows like to prepend a BOM, which is not content.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PresetError(f"{label}: file not found") from None
    except IsADirectoryError:
        raise PresetError(f"{label}: is a directory, not a preset file") from None
    except UnicodeDecodeError as exc:
        raise PresetError(f"{label}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    except OSError as exc:
        raise PresetError(f"{label}: cannot read file ({exc.strerror or exc})") from None
    if not text.strip():
        raise PresetError(f"{label}: file is empty")
    data = _parse_toml(text, label) if suffix == ".toml" else _parse_yaml(text, label)
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise PresetError(f"{label}: the top level must be a mapping of preset keys, got {kind}")
    return data


def _parse_toml(text: str, label: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The message already ends with "(at line N, column M)".
        raise PresetError(f"{label}: TOML syntax error: {one_line(str(exc))}") from None


def _parse_yaml(text: str, label: str) -> Any:
    import yaml  # only for .yaml presets: PyYAML costs ~10 ms at start-up otherwise

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise PresetError(f"{label}: YAML syntax error{where}: {one_line(problem)}") from None
    except yaml.YAMLError as exc:
        raise PresetError(f"{label}: YAML error: {one_line(str(exc))}") from None
