"""A quick prompt (`imgtag run --prompt TEXT [--field NAME:TYPE ...]`): a one-line custom task as a preset.

The prompt and its fields travel as one string, `prompt:{json}` (`quick_spec`), in the place a preset's name or
file goes (`RunConfig.preset`, the store's target record), so everything that rebuilds a target from the store
(`status`, `export`, `retry`, `cancel`) rebuilds this one too. `load_preset` turns the string into preset data
here; the preset's version is the usual hash of what is asked (model.compute_version), so the same prompt and
fields are the same target (a rerun asks nothing again) and a changed prompt is a new one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from imgtag.config.options import for_cli, option
from imgtag.presets.errors import PresetError

PREFIX = "prompt:"
# The small set of field types, as JSON Schema, and how the prompt names them for a server without schemas.
TYPES: dict[str, tuple[dict[str, Any], str]] = {
    "str": ({"type": "string"}, "text"),
    "int": ({"type": "integer"}, "a whole number"),
    "float": ({"type": "number"}, "a number"),
    "bool": ({"type": "boolean"}, "true or false"),
    "list[str]": ({"type": "array", "items": {"type": "string"}}, "a list of short texts"),
}
DEFAULT_FIELD = ("answer", "str")
ALIASES = {"list": "list[str]"}  # the short spelling `imgtag run --help` shows
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_FIELDS = 32

SYSTEM = """\
You look at one image and do the task you are given about it: answer the question, or give the values asked for.
Say only what the image shows; when it does not show what is asked, say so plainly instead of guessing.

Fields:
{fields}

Answer with one JSON object that uses only these fields and nothing else."""


def parse_fields(specs: Sequence[str]) -> list[tuple[str, str]]:
    """`NAME:TYPE` (or `NAME`, text) per --field; PresetError with one sentence for a bad one."""
    fields: list[tuple[str, str]] = []
    kinds = ", ".join(TYPES)
    for spec in specs:
        name, sep, kind = spec.partition(":")
        name, kind = name.strip(), (kind.strip().replace(" ", "") if sep else "str")
        kind = ALIASES.get(kind, kind)
        if not _NAME.fullmatch(name):
            raise PresetError(f"{option('fields')} {spec!r}: the name must be letters, digits and _ (not starting "
                              f"with a digit), as in {option('fields', 'person:bool')}")
        if kind not in TYPES:
            raise PresetError(f"{option('fields')} {spec!r}: the type must be one of {kinds}")
        if any(name == seen for seen, _ in fields):
            raise PresetError(f"{option('fields')} {name!r} is given twice")
        fields.append((name, kind))
    if len(fields) > MAX_FIELDS:
        raise PresetError(f"{option('fields')}: at most {MAX_FIELDS} fields, not {len(fields)}")
    return fields or [DEFAULT_FIELD]


def quick_spec(prompt: str, field_specs: Sequence[str]) -> str:
    """The preset string for a prompt and its --field specs (checked here, before anything is created)."""
    text = prompt.strip()
    if not text:
        example = '--prompt "Is there a person?"' if for_cli() else "prompt='Is there a person?'"
        raise PresetError(f"{option('prompt')} is empty: give the question or task, e.g. {example}")
    fields = parse_fields(field_specs)
    return PREFIX + json.dumps({"prompt": text, "fields": [list(f) for f in fields]}, ensure_ascii=False,
                               separators=(",", ":"))


def is_quick(preset: str) -> bool:
    return preset.startswith(PREFIX)


def quick_data(spec: str) -> tuple[str, dict[str, Any]]:
    """(preset name, preset data as a preset file would give it) for a `prompt:` string."""
    try:
        raw = json.loads(spec[len(PREFIX):])
        prompt = str(raw["prompt"])
        fields = parse_fields([f"{name}:{kind}" for name, kind in raw["fields"]])
    except (ValueError, KeyError, TypeError) as exc:
        raise PresetError(f"a {option('prompt')} preset could not be read from the store ({exc})") from None
    props = {name: dict(TYPES[kind][0]) for name, kind in fields}
    listing = "\n".join(f"- {name}: {TYPES[kind][1]}" for name, kind in fields)
    # Named by a hash of prompt and fields: two prompts in one --out are two targets with their own folders.
    digest = hashlib.sha256(spec.encode("utf-8")).hexdigest()[:8]
    return f"prompt-{digest}", {
        "description": f"--prompt {prompt[:60]}{'...' if len(prompt) > 60 else ''}",
        "system": SYSTEM.format(fields=listing),
        "instruction": prompt,
        "schema": {"type": "object", "properties": props, "required": list(props)},
        "detail": "standard",
        "max_output_tokens": 1024,
        "expected_output_tokens": 150,
    }
