"""The review's fast value check agrees with jsonschema on the keywords it decides itself, and hands every other
schema to jsonschema."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from imgtag.review.fields import fast_check

TAGS = {"type": "array", "minItems": 1, "maxItems": 5, "uniqueItems": True,
        "items": {"type": "string", "minLength": 1, "maxLength": 4, "pattern": "^[a-z]"}}
VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
                      lambda inner: st.lists(inner, max_size=7), max_leaves=10)


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_fast_check_agrees_with_jsonschema(value):
    for node in (TAGS, {"type": "string", "maxLength": 3}, {"enum": ["a", 1, True]}, {"type": ["string", "null"]}):
        assert fast_check(node)(value) == Draft202012Validator(node).is_valid(value), (node, value)  # type: ignore[misc]


def test_other_keywords_go_to_jsonschema():
    assert fast_check({"type": "string", "format": "date"}) is None
    assert fast_check({"type": "array", "items": {"$ref": "#/$defs/x"}}) is None
    assert fast_check({"anyOf": [{"type": "string"}]}) is None


def test_editors_follow_the_schema():
    from imgtag.presets import load_preset
    from imgtag.review.fields import Fields

    preset = load_preset("ecommerce", categories=["上衣", "裤子", "鞋"])
    fields = Fields(preset.fields, preset.schema, set(preset.list_fields))
    specs = {name: spec.as_json() for name, spec in fields.specs.items()}
    assert specs["category"]["kind"] == "enum" and specs["category"]["choices"] == ["上衣", "裤子", "鞋"]
    assert specs["tags"]["kind"] == "list" and specs["tags"]["max_items"] == 5
    assert specs["description"]["kind"] == "text" and specs["description"]["max_length"] == 50
    assert fields.check_value("category", "裤子") is None
    assert "上衣" in (fields.check_value("category", "帽子") or "")
