"""Model text -> JSON object -> checked against the preset's FULL schema.

Structured outputs usually hand us clean JSON, but fallback servers and older models wrap it in code
fences or prose. Those wrappers are removed because doing so cannot change the answer. Nothing else is
"repaired": truncated JSON (the model hit max_tokens) is an error, and a value that breaks the schema
is an error even when cutting it would make it pass. A failed parse is recorded and retried by the
caller, never written as a result.

The only normalisations are ones that keep meaning: leading/trailing whitespace is stripped from every
string, and a null in an optional field that does not allow null is read as "absent" (OpenAI strict
mode makes optional fields nullable because it cannot leave them out).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imgtag.validate.fastcheck import Check, compile_check

if TYPE_CHECKING:  # jsonschema (~0.2 s) loads with the first answer: a rerun with nothing to ask never needs it
    from jsonschema.exceptions import ValidationError

MAX_REPORTED_ERRORS = 3
_PREVIEW_CHARS = 20
_MAX_CANDIDATES = 64
# How a JSON object (as opposed to a brace in prose) begins: "{" then a key, an immediate "}", or the
# end of the text (cut off right after the brace).
_JSON_OBJECT_START = re.compile(r'\{\s*(["}]|$)')


@dataclass
class Parsed:
    fields: dict[str, Any] | None  # the validated object; None whenever error is set
    error: str | None  # one line, None on success
    repaired: str | None  # which wrapper was removed, if any


class _JSONProblem(ValueError):
    """A reason the text is not one strict JSON document (duplicate keys, NaN)."""


def parse_output(text: str, schema: dict[str, Any]) -> Parsed:
    """Parse a model's text answer and validate it against the full preset schema."""
    # A BOM is an encoding artefact, not content; json.loads refuses it.
    text = (text or "").lstrip("\ufeff")
    if not text.strip():
        return Parsed(None, "empty output: the model returned no text", None)

    try:
        return _checked(_loads(text), schema, None)
    except (json.JSONDecodeError, _JSONProblem) as exc:
        first_error = exc

    fenced = _strip_fence(text)
    if fenced is not None:
        try:
            return _checked(_loads(fenced), schema, "stripped code fence")
        except (json.JSONDecodeError, _JSONProblem):
            pass  # perhaps prose inside the fence too: the scanner below still sees the whole text

    found = _extract_object(text)
    if isinstance(found, _Found):
        return _checked(found.value, schema, "extracted JSON object from prose")
    if isinstance(found, _Truncated):
        return Parsed(None, f"truncated JSON: the object starting at char {found.start} is never closed "
                            "(output cut off, e.g. by max_tokens)", None)
    if isinstance(found, _Invalid):
        return Parsed(None, f"not valid JSON: {found.message}", None)
    if "{" not in text:
        shown = _preview(text.strip(), 40)
        return Parsed(None, f"not valid JSON: no JSON object in the output: {shown}", None)
    return Parsed(None, f"not valid JSON: {_describe_decode_error(first_error)}", None)


def parse_object(obj: Any, schema: dict[str, Any]) -> Parsed:
    """Validate an answer that arrived as an object already (e.g. a tool_use input)."""
    return _checked(obj, schema, None)


# -- strict JSON -------------------------------------------------------------------------------------


def _loads(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Python keeps the last duplicate silently; which one the model "meant" is unknowable, so refuse.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _JSONProblem(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise _JSONProblem(f"{name} is not valid JSON")


def _describe_decode_error(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at char {exc.pos}"
    return str(exc)


# -- wrappers ----------------------------------------------------------------------------------------


def _strip_fence(text: str) -> str | None:
    """The body of a text that is one ``` / ```json fenced block; None if it is not fenced.

    Only the outermost fence lines are removed, so a ``` inside a JSON string stays untouched. A missing
    closing fence is tolerated here; if the body is then incomplete JSON, the caller reports truncation."""
    body = text.strip()
    if not body.startswith("```"):
        return None
    newline = body.find("\n")
    if newline < 0:
        return None
    body = body[newline + 1:]
    if body.rstrip().endswith("```"):
        body = body.rstrip()[:-3]
    return body


@dataclass
class _Found:
    value: dict[str, Any]


@dataclass
class _Truncated:
    start: int


@dataclass
class _Invalid:
    message: str


def _extract_object(text: str) -> _Found | _Truncated | _Invalid | None:
    """The first balanced top-level {...} in text that parses as a JSON object.

    A real scanner, not a greedy regex: braces inside strings and escaped quotes do not count. A
    candidate that does not parse is skipped as a whole (its inner braces are not top-level), and an
    object still open at the end of the text means the output was truncated: we stop there rather than
    return some smaller object nested inside it."""
    invalid: _Invalid | None = None
    pos = 0
    # Each attempt may scan to the end of the text; a cap keeps brace-heavy prose from going quadratic.
    for _ in range(_MAX_CANDIDATES):
        start = text.find("{", pos)
        if start < 0:
            return invalid
        end = _balanced_end(text, start)
        if end is None:
            if _JSON_OBJECT_START.match(text, start):
                return _Truncated(start)  # more telling than any earlier non-JSON braces
            # A prose brace ("use {braces} like {this") that never closes: look further on.
            pos = start + 1
            continue
        candidate = text[start:end]
        try:
            value = _loads(candidate)
        except json.JSONDecodeError as exc:
            invalid = invalid or _Invalid(f"{exc.msg} at char {start + exc.pos}")
        except _JSONProblem as exc:
            invalid = invalid or _Invalid(str(exc))
        else:
            if isinstance(value, dict):
                return _Found(value)
        pos = end
    return invalid


def _balanced_end(text: str, start: int) -> int | None:
    """Index just past the brace that closes the one at start, or None if it never closes."""
    depth = 0
    in_string = False
    escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


# -- validation --------------------------------------------------------------------------------------


# A validator per schema, made once: every answer of a run is checked against the same schema. Keyed by the
# schema's id with the schema kept beside it (so the id is not reused); a schema is not changed once in use.
_VALIDATORS: dict[int, tuple[dict[str, Any], Any]] = {}
_VALIDATORS_MAX = 64


def _validator(schema: dict[str, Any]) -> Any:
    hit = _VALIDATORS.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    if len(_VALIDATORS) >= _VALIDATORS_MAX:
        _VALIDATORS.clear()
    _VALIDATORS[id(schema)] = (schema, validator)
    return validator


# The quick checks per schema (validate/fastcheck.py), kept like the validators; None: the schema needs jsonschema.
_QUICK: dict[int, tuple[dict[str, Any], Check | None]] = {}


def _quick(schema: dict[str, Any]) -> Check | None:
    hit = _QUICK.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    check = compile_check(schema)
    if len(_QUICK) >= _VALIDATORS_MAX:
        _QUICK.clear()
    _QUICK[id(schema)] = (schema, check)
    return check


def _checked(value: Any, schema: dict[str, Any], repaired: str | None) -> Parsed:
    if not isinstance(value, dict):
        return Parsed(None, f"expected a JSON object, got {json_type(value)}", repaired)
    fields = _normalise(value, schema)
    quick = _quick(schema)
    if quick is not None and quick(fields):  # valid for sure; jsonschema is asked only to word what is wrong
        return Parsed(fields, None, repaired)
    validator = _validator(schema)
    # dict.fromkeys: jsonschema reports each missing property separately; one line says it once.
    problems = list(dict.fromkeys(_describe(e) for e in validator.iter_errors(fields)))
    if not problems:
        return Parsed(fields, None, repaired)
    shown = "; ".join(problems[:MAX_REPORTED_ERRORS])
    more = len(problems) - MAX_REPORTED_ERRORS
    suffix = f" (+{more} more)" if more > 0 else ""
    return Parsed(None, f"schema: {shown}{suffix}", repaired)


def _normalise(value: Any, schema: Any) -> Any:
    """Strip strings everywhere; drop nulls standing for absent optional fields. Returns a new value."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        item_schema = schema.get("items") if isinstance(schema, dict) else None
        return [_normalise(v, item_schema) for v in value]
    if isinstance(value, dict):
        props = schema.get("properties", {}) if isinstance(schema, dict) else {}
        required = set(schema.get("required", [])) if isinstance(schema, dict) else set()
        out: dict[str, Any] = {}
        for key, item in value.items():
            sub = props.get(key)
            if item is None and key in props and key not in required and not _allows_null(sub):
                continue
            out[key] = _normalise(item, sub)
        return out
    return value


def _allows_null(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return schema is True
    from jsonschema import Draft202012Validator

    try:
        return Draft202012Validator(schema).is_valid(None)
    except Exception:  # e.g. a $ref that only resolves inside the full schema: keep the null, let it fail
        return True


def _describe(error: ValidationError) -> str:
    path = _json_path(error.absolute_path)
    where = f"{path}: " if path else ""
    inst, val = error.instance, error.validator_value
    kind = error.validator
    if kind == "maxLength":
        return f"{where}{_preview(inst)} is longer than {val} characters ({len(inst)})"
    if kind == "minLength":
        if val == 1:
            return f"{where}must not be empty"
        return f"{where}{_preview(inst)} is shorter than {val} characters ({len(inst)})"
    if kind == "maxItems":
        return f"{where}expected at most {_items(val)}, got {len(inst)}"
    if kind == "minItems":
        return f"{where}expected at least {_items(val)}, got {len(inst)}"
    if kind == "required":
        missing = [name for name in val if isinstance(inst, dict) and name not in inst]
        return f"{where}missing required field{'s' if len(missing) > 1 else ''} " + ", ".join(
            repr(m) for m in missing
        )
    if kind == "additionalProperties":
        known = set(error.schema.get("properties", {}))
        extra = [k for k in inst if k not in known] if isinstance(inst, dict) else []
        return f"{where}unexpected field{'s' if len(extra) > 1 else ''} " + ", ".join(repr(k) for k in extra)
    if kind == "type":
        wanted = " or ".join(val) if isinstance(val, list) else val
        return f"{where}expected {wanted}, got {json_type(inst)}"
    if kind == "enum":
        options = ", ".join(_preview(v) for v in val[:8]) + (", …" if len(val) > 8 else "")
        return f"{where}{_preview(inst)} is not one of {options}"
    return f"{where}{_one_line(error.message)}"


def _items(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"


def _json_path(parts: Iterator[Any] | Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def json_type(value: Any) -> str:
    """The JSON Schema type name of a decoded JSON value (bool before int: True is an int in Python)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _preview(value: Any, limit: int = _PREVIEW_CHARS) -> str:
    """A short, single-line rendering of a value for error messages (the value itself is untouched)."""
    if isinstance(value, str):
        shown = value if len(value) <= limit else value[:limit] + "…"
        return "'" + _one_line(shown.replace("\n", "\\n")) + "'"
    text = json.dumps(value, ensure_ascii=False)
    return _one_line(text if len(text) <= limit else text[:limit] + "…")


def _one_line(text: str) -> str:
    return " ".join(text.split())
