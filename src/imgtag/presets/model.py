"""The Preset type: what to ask the model, what shape the answer must have, and a version for both.

Presets come from TOML files: the built-ins in presets/builtin/, or a user's own TOML/YAML file, which
may `extends` a built-in and change or add fields. The version is a hash of everything that changes
the model's answer; the store keys paid work by it, so editing a prompt re-runs images while renaming
a preset or rewording its one-line description does not.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

from imgtag.config.options import option
from imgtag.presets.checks import DETAIL_LEVELS, check_complete, check_keys, check_titles
from imgtag.presets.errors import PresetError
from imgtag.presets.files import SUFFIXES, read_preset_file
from imgtag.presets.language import language_instruction, normalise_lang
from imgtag.presets.quick import is_quick, quick_data
from imgtag.validate.schema import describe_constraints, is_array_schema, is_object_schema

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DetailLevel = Literal["low", "standard", "high"]

BUILTIN_NAMES = ("ecommerce", "keywords", "alt-text", "caption", "ocr")
DEFAULT_PRESET = "ecommerce"
# For user files that do not say: enough for a handful of short fields, and a typical answer size.
DEFAULT_MAX_OUTPUT_TOKENS = 1024
DEFAULT_EXPECTED_OUTPUT_TOKENS = 300
# --max-edge bounds: below 200 px no image keeps the 200-px short side imgtag guarantees; above 2576 px no
# model's tier takes more.
MIN_EDGE, MAX_EDGE = 200, 2576


@dataclass(frozen=True)
class Preset:
    name: str
    description: str  # one line, for `imgtag presets`
    system: str  # system prompt, language instruction included
    instruction: str  # user text sent after the image
    schema: dict[str, Any]  # FULL JSON Schema (draft 2020-12) of the answer object, every constraint kept
    detail: DetailLevel
    max_output_tokens: int
    expected_output_tokens: int  # typical answer size, for cost estimates
    lang: str | None
    version: str  # 12 hex chars, see compute_version
    fields: list[str]  # top-level property names in schema order (CSV columns)
    list_fields: list[str]  # the array-valued ones (CSV joins them with "|")
    # Field guidance and a worked example, sent after the system prompt only where it makes the shared prefix
    # long enough to be cached (see pricing/prefix.py); empty = none.
    guide: str = ""
    # A short system prompt (limits and language included, like `system`) for models that cannot cache the
    # prefix: there every token of it is paid on every request (see pricing/prefix.py); empty = use `system`.
    compact_system: str = ""
    max_edge: int | None = None  # --max-edge: long-edge cap in px, overriding the detail level's
    # What a .txt caption holds (export format txt), e.g. "{short_caption}"; None = the first field.
    # Not part of the version: it changes an export, not the model's answer.
    txt_template: str | None = None
    # Column headers by output language ({"zh": {"tags": "标签"}}), for workbooks; not part of the version either.
    titles: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)


def builtin_names() -> list[str]:
    return list(BUILTIN_NAMES)


def load_preset(
    name_or_path: str, *, lang: str | None = None, categories: Sequence[str] | None = None
) -> Preset:
    """A built-in by name, or a user preset file (.toml/.yaml/.yml).

    lang overrides the preset's own `lang`; categories turn the `category` field into an enum of
    exactly those values. Raises PresetError with one line naming the file and the problem."""
    if name_or_path in BUILTIN_NAMES:
        label = f"presets/builtin/{name_or_path}.toml"
        data = _builtin_data(name_or_path)
        name = name_or_path
    elif is_quick(name_or_path):  # --prompt: built here, checked like a user's file
        label = option("prompt")
        name, data = quick_data(name_or_path)
    else:
        path = Path(name_or_path)
        if path.suffix.lower() not in SUFFIXES and not path.exists():
            from imgtag.config.tomlfile import did_you_mean

            raise PresetError(
                f"unknown preset {name_or_path!r}{did_you_mean(name_or_path, BUILTIN_NAMES)}: use a built-in "
                f"({', '.join(BUILTIN_NAMES)}) "
                "or a preset file ending in .toml, .yaml or .yml"
            )
        label = name_or_path
        raw = read_preset_file(path, label)
        check_keys(raw, label, user=True)
        data = _apply_extends(raw, label)
        name = str(raw.get("name") or "").strip() or path.stem
    # A built-in's schema is checked against the meta-schema by the tests, not at each start (see check_complete).
    check_complete(data, label, meta_schema=name_or_path not in BUILTIN_NAMES)
    return _build(name, data, label, lang=lang, categories=categories)


def compute_version(
    *, system: str, instruction: str, schema: dict[str, Any], detail: str, max_output_tokens: int,
    lang: str | None, guide: str = "", max_edge: int | None = None, compact_system: str = "",
) -> str:
    """sha256 of the canonical JSON of everything that changes the answer, first 12 hex digits.

    Canonical = sorted keys, so TOML vs YAML spelling of one preset agree; the field order is hashed
    separately because it does matter (it is the order the model writes and the CSV's columns)."""
    payload = {
        "system": system,
        "instruction": instruction,
        "schema": schema,
        "fields": list(schema.get("properties", {})),
        "detail": detail,
        "max_output_tokens": max_output_tokens,
        "lang": lang,
    }
    # Only when set, so presets without them keep their versions.
    if guide:
        payload["guide"] = guide
    if compact_system:
        payload["compact_system"] = compact_system
    if max_edge is not None:
        payload["max_edge"] = max_edge
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


# -- loading -----------------------------------------------------------------------------------------


@cache
def _builtin_text(name: str) -> str:
    return (resources.files("imgtag.presets") / "builtin" / f"{name}.toml").read_text(encoding="utf-8")


def _builtin_data(name: str) -> dict[str, Any]:
    label = f"presets/builtin/{name}.toml"
    data = tomllib.loads(_builtin_text(name))
    check_keys(data, label, user=False)
    return data


def _apply_extends(raw: dict[str, Any], label: str) -> dict[str, Any]:
    base_name = raw.get("extends")
    if base_name is None:
        data = dict(raw)
        data.setdefault("description", f"user preset from {Path(label).name}")
        return data
    if base_name not in BUILTIN_NAMES:
        raise PresetError(
            f"{label}: 'extends' must name a built-in preset ({', '.join(BUILTIN_NAMES)}), got {base_name!r}"
        )
    data = _builtin_data(base_name)
    data["description"] = f"{data['description']} (customised in {Path(label).name})"
    for key, value in raw.items():
        if key in ("extends", "remove_fields"):
            continue
        if key == "titles":  # per language and field: a user's Chinese colour header keeps the rest
            base = data.get("titles", {})
            data[key] = {lang: {**base.get(lang, {}), **table} if isinstance(table, dict) else table
                         for lang, table in {**base, **value}.items()}
            continue
        data[key] = _merge_schema(data["schema"], value) if key == "schema" else value
    if "system" in raw and "system_compact" not in raw:
        data.pop("system_compact", None)  # the user's own rules, never the built-in's short version of others
    for field in raw.get("remove_fields", []):
        props = data["schema"].get("properties", {})
        if field not in props:
            raise PresetError(
                f"{label}: 'remove_fields' names {field!r}, which {base_name} does not have "
                f"({', '.join(props)})"
            )
        del props[field]
        data["titles"] = {lang: {k: v for k, v in table.items() if k != field}
                          for lang, table in data.get("titles", {}).items()}
        data["schema"]["required"] = [f for f in data["schema"].get("required", []) if f != field]
        data["untranslated_fields"] = [f for f in data.get("untranslated_fields", []) if f != field]
    return data


def _merge_schema(base: Any, override: Any) -> Any:
    """Deep merge: tables merge key by key, `required` lists are united, anything else is replaced.

    A property redefined with a different `type` replaces the base property wholesale, so that no
    stale array keywords (minItems...) linger on what is now a string."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return copy.deepcopy(override)
    if "type" in override and override["type"] != base.get("type"):
        return copy.deepcopy(override)
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if key == "required" and isinstance(value, list) and isinstance(merged.get("required"), list):
            merged["required"] = list(dict.fromkeys([*merged["required"], *value]))
        elif key in merged:
            merged[key] = _merge_schema(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# -- building ----------------------------------------------------------------------------------------


def _build(
    name: str, data: dict[str, Any], label: str, *, lang: str | None, categories: Sequence[str] | None
) -> Preset:
    schema = copy.deepcopy(data["schema"])
    _close_objects(schema)
    instruction = data["instruction"].strip()
    if categories:
        _apply_categories(schema, categories, label)

    code = normalise_lang(lang if lang is not None else data.get("lang"))
    limits = describe_constraints(schema)
    untranslated = data.get("untranslated_fields", [])
    system = _system_text(data["system"], limits, code, untranslated)
    compact = str(data.get("system_compact", "")).strip()
    compact_system = _system_text(compact, limits, code, untranslated) if compact else ""

    detail = cast(DetailLevel, data.get("detail", "standard"))
    guide = str(data.get("guide", "")).strip()
    max_tokens = int(data.get("max_output_tokens", DEFAULT_MAX_OUTPUT_TOKENS))
    expected = int(data.get("expected_output_tokens", min(DEFAULT_EXPECTED_OUTPUT_TOKENS, max_tokens)))
    props: dict[str, Any] = schema["properties"]
    titles = data.get("titles", {})
    check_titles(titles, list(props), label)
    preset = Preset(
        name=name,
        description=" ".join(str(data.get("description", "")).split()),
        system=system,
        instruction=instruction,
        schema=schema,
        detail=detail,
        max_output_tokens=max_tokens,
        expected_output_tokens=min(expected, max_tokens),
        lang=code,
        version="",  # set below, from the finished preset
        fields=list(props),
        list_fields=[f for f, sub in props.items() if isinstance(sub, dict) and is_array_schema(sub)],
        guide=guide,
        compact_system=compact_system,
        txt_template=data.get("txt_template"),
        titles={lang.lower(): dict(table) for lang, table in titles.items()},
    )
    return dataclasses.replace(preset, version=version_of(preset))


def version_of(preset: Preset) -> str:
    """compute_version over the preset's own answer-affecting parts (one list, for building and for overrides)."""
    return compute_version(system=preset.system, instruction=preset.instruction, schema=preset.schema,
                           detail=preset.detail, max_output_tokens=preset.max_output_tokens, lang=preset.lang,
                           guide=preset.guide, max_edge=preset.max_edge, compact_system=preset.compact_system)


def _system_text(text: str, limits: list[str], code: str | None, untranslated: list[str]) -> str:
    system = text.strip()
    if limits:
        # Stated in the prompt as well as the schema: a schema-less server never sees the schema, and
        # Anthropic drops length limits from it. Generated, so it always matches the schema, overrides
        # of a built-in included.
        system += "\n\nLimits (answers are checked against them; one that breaks any is rejected):\n"
        system += "\n".join(f"- {line}" for line in limits)
    if code:
        system += "\n\n" + language_instruction(code, untranslated)
    return system


def with_detail(preset: Preset, detail: str | None = None, max_edge: int | None = None) -> Preset:
    """The preset with --detail / --max-edge applied. A different image size is a different answer, so the
    version (the result key) changes with it."""
    if detail is None and max_edge is None:
        return preset
    if detail is not None and detail not in DETAIL_LEVELS:
        raise PresetError(f"{option('detail')} must be one of {', '.join(DETAIL_LEVELS)}, not {detail!r}")
    if max_edge is not None and not MIN_EDGE <= max_edge <= MAX_EDGE:
        raise PresetError(f"{option('max_edge')} must be between {MIN_EDGE} and {MAX_EDGE} px, not {max_edge}")
    changed = dataclasses.replace(preset, detail=cast(DetailLevel, detail or preset.detail),
                                  max_edge=max_edge if max_edge is not None else preset.max_edge)
    return dataclasses.replace(changed, version=version_of(changed))


def _close_objects(schema: dict[str, Any]) -> None:
    """Objects that do not say otherwise reject unknown fields: the providers are told exactly that,
    and an extra field would have no CSV column to go to.

    Only plain data positions are closed (properties, items, $defs, anyOf/oneOf alternatives): closing
    an allOf part or an if/not condition would change what the schema means."""
    if not isinstance(schema, dict):
        return
    if is_object_schema(schema) and "allOf" not in schema:
        schema.setdefault("additionalProperties", False)
    children: list[Any] = [schema.get("items")]
    for key in ("properties", "$defs", "definitions"):
        children.extend((schema.get(key) or {}).values())
    for key in ("anyOf", "oneOf"):
        children.extend(schema.get(key) or [])
    for child in children:
        _close_objects(child)


def _apply_categories(schema: dict[str, Any], categories: Sequence[str], label: str) -> None:
    """Make `category` an enum of exactly the shop's own list (the Limits block then shows it too)."""
    if isinstance(categories, str):
        raise TypeError("categories must be a sequence of names, not one string")
    values: list[str] = []
    for value in categories:
        if not isinstance(value, str) or not value.strip():
            raise PresetError(f"{label}: categories must be non-empty text, got {value!r}")
        values.append(" ".join(value.split()))
    values = list(dict.fromkeys(values))
    prop = schema["properties"].get("category")
    if not isinstance(prop, dict) or prop.get("type", "string") != "string":
        raise PresetError(
            f"{label}: a category list needs a text field named 'category', and this preset has none"
        )
    prop["type"] = "string"
    prop.pop("const", None)
    prop["enum"] = values
