"""The quick schema checks (validate/fastcheck.py): a valid answer of any built-in preset is accepted without
jsonschema, and whatever they accept jsonschema accepts too, for random values against schemas using every keyword
they cover."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from imgtag.presets import load_preset
from imgtag.validate.fastcheck import compile_check
from imgtag.validate.parse import parse_output

VALID = {
    "ecommerce": {"tags": ["shirt", "red"], "category": "Apparel", "description": "A red shirt.", "color": "red",
                  "style": "casual"},
    "caption": {"short_caption": "a red shirt on a hanger", "detailed_caption": "A photograph of a red shirt.",
                "tags": ["shirt", "red"]},
    "keywords": {"title": "Red shirt", "description": "A red shirt on a hanger.",
                 "keywords": [f"k{i}" for i in range(12)]},
    "alt-text": {"alt": "A red shirt", "title": "Shirt", "long_description": "A red shirt on a wooden hanger."},
    "ocr": {"text": "SALE", "language": "en", "has_text": True},
}


@pytest.mark.parametrize("preset", sorted(VALID))
def test_valid_answers_of_every_builtin_preset_need_no_jsonschema(preset: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    schema = load_preset(preset).schema
    assert compile_check(schema) is not None

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("jsonschema asked about a valid answer")

    monkeypatch.setattr(Draft202012Validator, "iter_errors", refuse)
    parsed = parse_output(json.dumps(VALID[preset]), schema)
    assert parsed.error is None and parsed.fields == VALID[preset]


def test_an_invalid_answer_is_still_worded_by_jsonschema() -> None:
    schema = load_preset("ecommerce").schema
    bad = dict(VALID["ecommerce"], tags=[f"t{i}" for i in range(7)], extra=1)
    parsed = parse_output(json.dumps(bad), schema)
    assert parsed.error == "schema: unexpected field 'extra'; tags: expected at most 5 items, got 7"


@pytest.mark.parametrize("schema", [{"$ref": "#/$defs/x", "$defs": {"x": {}}}, {"anyOf": [{"type": "string"}]},
                                    {"type": "string", "format": "date"}, {"not": {}}, False,
                                    {"type": "object", "patternProperties": {"a": {}}, "additionalProperties": False}])
def test_other_keywords_leave_the_schema_to_jsonschema(schema: Any) -> None:
    assert compile_check(schema) is None


MIXED: dict[str, Any] = {
    "type": "object",
    "required": ["s", "n"],
    "additionalProperties": False,
    "properties": {
        "s": {"type": "string", "minLength": 1, "maxLength": 3, "pattern": "^[a-c]*$"},
        "n": {"type": ["integer", "null"], "minimum": -2, "exclusiveMaximum": 3},
        "f": {"type": "number", "exclusiveMinimum": 0, "maximum": 2.5},
        "e": {"enum": ["a", 1, True, None, 1.0]},
        "c": {"const": 1},
        "b": {"type": "boolean"},
        "u": {"type": "array", "uniqueItems": True, "minItems": 1, "maxItems": 3},
        "a": {"type": "array", "items": {"type": "string", "maxLength": 2}},
        "o": {"type": "object", "properties": {"x": {"type": "integer"}}, "additionalProperties": {"type": "string"}},
    },
}
SCHEMAS = [MIXED, *(load_preset(name).schema for name in sorted(VALID))]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-4, 4), st.floats(-4, 4, allow_nan=False),
                    st.sampled_from([1.0, 2.0, 3.0]), st.text("abcd", max_size=4))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text("abx", max_size=2), inner, max_size=3)),
                      max_leaves=8)
keys = st.sampled_from(["s", "n", "f", "e", "c", "b", "u", "a", "o", "zz", "tags", "category", "description", "color",
                        "style", "text", "language", "has_text", "keywords", "title", "alt", "long_description",
                        "short_caption", "detailed_caption"])


@settings(max_examples=400, deadline=None)
@given(which=st.integers(0, len(SCHEMAS) - 1), value=st.one_of(values, st.dictionaries(keys, values, max_size=7)))
def test_what_the_quick_checks_accept_jsonschema_accepts(which: int, value: Any) -> None:
    schema = SCHEMAS[which]
    check = compile_check(schema)
    assert check is not None
    if check(value):
        assert Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).is_valid(value)


@settings(max_examples=200, deadline=None)
@given(s=st.text("abc", min_size=1, max_size=3), n=st.one_of(st.none(), st.integers(-2, 2), st.sampled_from([2.0])),
       u=st.lists(st.text("ab", max_size=2), min_size=1, max_size=3, unique=True))
def test_valid_values_of_the_mixed_schema_are_accepted(s: str, n: Any, u: list[str]) -> None:
    value = {"s": s, "n": n, "u": u, "e": None, "c": 1, "o": {"x": 2, "y": "z"}}
    assert Draft202012Validator(MIXED).is_valid(value)
    check = compile_check(MIXED)
    assert check is not None and check(value)
