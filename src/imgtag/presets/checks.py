"""Checks on a preset's raw data, each failure a single PresetError line naming the file.

Two stages: `check_keys` looks at what one file says (unknown keys, wrong types), before a user file
is merged onto the built-in it extends; `check_complete` looks at the merged result (prompts present,
limits in range, the schema a valid and usable JSON Schema).
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from imgtag.presets.errors import PresetError
from imgtag.validate.schema import KNOWN_KEYWORDS, SUBSCHEMA_MAP, is_array_schema, is_object_schema, iter_subschemas

if TYPE_CHECKING:  # jsonschema (~25 ms to import) loads only when a user's schema is checked
    from jsonschema.exceptions import SchemaError

DETAIL_LEVELS = ("low", "standard", "high")
# Below 64 tokens no preset's JSON fits; above 16384 the SDK insists on streaming (api-facts D), and no
# tagging answer needs that much.
MIN_OUTPUT_TOKENS = 64
MAX_OUTPUT_TOKENS = 16384

# key -> expected type; "strings" means a list of strings.
KEY_TYPES: dict[str, str] = {
    "name": "string",
    "description": "string",
    "extends": "string",
    "system": "string",
    "instruction": "string",
    "schema": "table",
    "detail": "string",
    "guide": "string",
    "system_compact": "string",
    "max_output_tokens": "integer",
    "expected_output_tokens": "integer",
    "lang": "string",
    "untranslated_fields": "strings",
    "remove_fields": "strings",
    "txt_template": "string",
    "titles": "table",
}
_USER_ONLY = ("extends", "remove_fields")
_TYPING_KEYWORDS = frozenset({"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref"})
_TYPE_WORDS = {
    "string": "a string", "integer": "an integer", "number": "a number", "boolean": "a boolean",
    "array": "an array", "object": "an object (table)", "null": "null", "table": "a table (mapping)",
    "strings": "a list of strings",
}


def check_keys(raw: dict[str, Any], label: str, *, user: bool) -> None:
    """Unknown keys and wrong value types in one file."""
    for key, value in raw.items():
        if not isinstance(key, str) or key not in KEY_TYPES or (not user and key in _USER_ONLY):
            raise PresetError(f"{label}: unknown key {key!r}{_suggest(str(key), KEY_TYPES)}")
        wanted = KEY_TYPES[key]
        if not _has_type(value, wanted):
            raise PresetError(f"{label}: {key!r} must be {_TYPE_WORDS[wanted]}, got {_show(value)}")
    if "remove_fields" in raw and "extends" not in raw:
        raise PresetError(f"{label}: 'remove_fields' only applies together with 'extends'")


def check_complete(data: dict[str, Any], label: str, *, meta_schema: bool = True) -> None:
    """The merged preset: everything needed is there and usable.

    meta_schema=False skips checking the schema against the JSON Schema meta-schema (jsonschema): for the
    built-ins, which tests/test_presets.py checks in full, so `imgtag run` starts without importing it."""
    for key, what in (("system", "the system prompt"), ("instruction", "the user instruction")):
        if not str(data.get(key, "")).strip():
            raise PresetError(f"{label}: missing {key!r} ({what})")
    if "schema" not in data:
        raise PresetError(f"{label}: missing 'schema' (the JSON Schema of the answer)")
    detail = data.get("detail", "standard")
    if detail not in DETAIL_LEVELS:
        raise PresetError(f"{label}: 'detail' must be one of {', '.join(DETAIL_LEVELS)}, got {_show(detail)}")
    max_tokens = data.get("max_output_tokens")
    if max_tokens is not None and not MIN_OUTPUT_TOKENS <= max_tokens <= MAX_OUTPUT_TOKENS:
        raise PresetError(
            f"{label}: 'max_output_tokens' must be between {MIN_OUTPUT_TOKENS} and {MAX_OUTPUT_TOKENS}, "
            f"got {max_tokens}"
        )
    expected = data.get("expected_output_tokens")
    if expected is not None and not 1 <= expected <= (max_tokens or MAX_OUTPUT_TOKENS):
        raise PresetError(
            f"{label}: 'expected_output_tokens' must be between 1 and max_output_tokens, got {expected}"
        )
    check_schema(data["schema"], label, meta_schema=meta_schema)
    fields = list(data["schema"]["properties"])
    for name in data.get("untranslated_fields", []):
        if name not in fields:
            raise PresetError(
                f"{label}: 'untranslated_fields' names {name!r}, which is not a schema field "
                f"({', '.join(fields)})"
            )


def check_schema(schema: dict[str, Any], label: str, *, meta_schema: bool = True) -> None:
    """A valid draft 2020-12 schema, no unknown keywords, and shaped like a preset answer."""
    if meta_schema:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise PresetError(f"{label}: {_schema_error(exc)}") from None

    for path, node in iter_subschemas(schema, "schema"):
        for key in node:
            if key not in KNOWN_KEYWORDS:
                raise PresetError(
                    f"{label}: unknown schema keyword {key!r} at '{path}'{_suggest(key, KNOWN_KEYWORDS)}"
                )
        for key in SUBSCHEMA_MAP & node.keys():
            for name in node[key]:
                if not isinstance(name, str):
                    raise PresetError(f"{label}: '{path}.{key}' has a non-text name {name!r}; quote it")
        _check_node(path, node, label)

    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        raise PresetError(f"{label}: 'schema' must be an object schema (type = \"object\") with 'properties'")
    if not schema["properties"]:
        raise PresetError(f"{label}: 'schema.properties' is empty; a preset needs at least one field")


def _check_node(path: str, node: dict[str, Any], label: str) -> None:
    ref = node.get("$ref")
    if isinstance(ref, str) and not ref.startswith("#"):
        raise PresetError(f"{label}: '{path}.$ref' must be a local reference ('#/$defs/...'), got {ref!r}")
    if is_object_schema(node):
        props = node.get("properties", {})
        for name in node.get("required", []):
            if name not in props:
                raise PresetError(
                    f"{label}: '{path}.required' lists {name!r}, which is not in its properties"
                )
        for name, sub in props.items():
            # Providers' decoders need to know what each field is; "anything" cannot be constrained.
            if isinstance(sub, dict) and not sub.keys() & _TYPING_KEYWORDS:
                raise PresetError(
                    f"{label}: '{path}.properties.{name}' needs a 'type' (or enum, const, anyOf, $ref)"
                )
    if is_array_schema(node) and "items" not in node and "prefixItems" not in node:
        raise PresetError(f"{label}: '{path}' is an array without an 'items' schema")
    for low, high, what in (("minItems", "maxItems", "items"), ("minLength", "maxLength", "characters"),
                            ("minimum", "maximum", "value")):
        lo, hi = node.get(low), node.get(high)
        if isinstance(lo, int | float) and isinstance(hi, int | float) and lo > hi:
            raise PresetError(
                f"{label}: '{path}' can never be satisfied: {low} {lo} is above {high} {hi} ({what})"
            )


def _schema_error(exc: SchemaError) -> str:
    path = ".".join(["schema", *(str(p) for p in exc.path)])
    if exc.validator == "type":
        wanted = exc.validator_value
        words = " or ".join(_TYPE_WORDS.get(w, w) for w in (wanted if isinstance(wanted, list) else [wanted]))
        return f"'{path}' must be {words}, got {_show(exc.instance)}"
    if exc.validator == "anyOf" and path.endswith(".type"):
        return (f"'{path}' must be a JSON type (string, number, integer, boolean, array, object, null), "
                f"got {_show(exc.instance)}")
    message = " ".join(exc.message.split())
    return f"'{path}' is not valid JSON Schema: {message}"


def check_titles(titles: dict[str, Any], fields: list[str], label: str) -> None:
    """`[titles.LANG]` tables: each maps fields of this preset to a header text."""
    for lang, table in titles.items():
        if not isinstance(table, dict):
            raise PresetError(f"{label}: 'titles.{lang}' must be a table of field = \"title\", got {_show(table)}")
        for name, title in table.items():
            if name not in fields:
                raise PresetError(f"{label}: 'titles.{lang}' names {name!r}, which is not a field of this preset "
                                  f"({', '.join(fields)}){_suggest(name, fields)}")
            if not isinstance(title, str) or not title.strip():
                raise PresetError(f"{label}: 'titles.{lang}.{name}' must be a non-empty string, got {_show(title)}")


def _has_type(value: Any, wanted: str) -> bool:
    if wanted == "string":
        return isinstance(value, str)
    if wanted == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if wanted == "table":
        return isinstance(value, dict)
    if wanted == "strings":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    raise AssertionError(wanted)


def _show(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return " ".join(text.split())


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    if not close:
        # Case and separators are the usual slips: max_items, MaxItems, max-items.
        squashed = {c.replace("_", "").replace("-", "").lower(): c for c in choices}
        hit = squashed.get(word.replace("_", "").replace("-", "").lower())
        close = [hit] if hit else []
    return f" (did you mean {close[0]!r}?)" if close else ""
