"""Provider schema transforms: what each decoder accepts, with dropped limits kept as words."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from imgtag.presets import builtin_names, load_preset
from imgtag.validate.schema import describe_constraints, to_anthropic_schema, to_openai_schema

ANTHROPIC_REJECTS = {"minLength", "maxLength", "maxItems", "minimum", "maximum", "exclusiveMinimum",
                     "exclusiveMaximum", "multipleOf", "pattern", "uniqueItems", "oneOf"}


def all_presets() -> list[Any]:
    return [load_preset(n) for n in builtin_names()] + [
        load_preset("ecommerce", lang="zh", categories=["女装", "男装", "鞋靴"])
    ]


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict anywhere in the schema (over-approximates subschemas, which is what we want here)."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def objects(node: Any) -> Iterator[dict[str, Any]]:
    return (n for n in walk(node) if n.get("type") == "object" or "properties" in n)


@pytest.mark.parametrize("preset", all_presets(), ids=lambda p: f"{p.name}-{p.version}")
def test_anthropic_schema_of_builtins(preset: Any) -> None:
    before = copy.deepcopy(preset.schema)
    out = to_anthropic_schema(preset.schema)
    assert preset.schema == before  # never mutates
    Draft202012Validator.check_schema(out)
    for node in walk(out):
        assert not ANTHROPIC_REJECTS & node.keys(), node
        if "minItems" in node:
            assert node["minItems"] in (0, 1)
    for node in objects(out):
        assert node["additionalProperties"] is False
    assert list(out["properties"]) == preset.fields
    assert out["required"] == preset.schema["required"]  # Anthropic allows optional fields


@pytest.mark.parametrize("preset", all_presets(), ids=lambda p: f"{p.name}-{p.version}")
def test_openai_schema_of_builtins(preset: Any) -> None:
    before = copy.deepcopy(preset.schema)
    out = to_openai_schema(preset.schema)
    assert preset.schema == before
    Draft202012Validator.check_schema(out)
    for node in objects(out):
        assert node["additionalProperties"] is False
        assert node["required"] == list(node["properties"])
    for node in walk(out):
        assert not {"minLength", "maxLength", "oneOf"} & node.keys()


def test_stripped_limits_survive_as_description_text() -> None:
    schema = load_preset("ecommerce").schema
    props = to_anthropic_schema(schema)["properties"]
    assert props["description"]["description"].endswith("(at most 50 characters)")
    assert "at most 5 items" in props["tags"]["description"]
    assert props["tags"]["minItems"] == 1  # allowed, so kept
    keywords = to_anthropic_schema(load_preset("keywords").schema)["properties"]["keywords"]
    assert "10 to 30 items" in keywords["description"] and "minItems" not in keywords
    # OpenAI-style servers enforce item counts themselves, so they get the keywords, not the words.
    keywords = to_openai_schema(load_preset("keywords").schema)["properties"]["keywords"]
    assert (keywords["minItems"], keywords["maxItems"]) == (10, 30)


def test_categories_enum_survives_both_transforms() -> None:
    schema = load_preset("ecommerce", categories=["a", "b"]).schema
    assert to_anthropic_schema(schema)["properties"]["category"]["enum"] == ["a", "b"]
    assert to_openai_schema(schema)["properties"]["category"]["enum"] == ["a", "b"]


def test_openai_optional_fields_become_nullable() -> None:
    out = to_openai_schema(load_preset("caption").schema)
    assert out["required"] == ["short_caption", "detailed_caption", "tags"]
    assert out["properties"]["tags"]["type"] == ["array", "null"]
    assert out["properties"]["short_caption"]["type"] == "string"


def test_nullable_variants() -> None:
    schema = {
        "type": "object",
        "$defs": {"size": {"type": "string", "enum": ["s", "m"]}},
        "properties": {
            "mood": {"type": "string", "enum": ["calm", "busy"]},
            "kind": {"const": "photo"},
            "size": {"$ref": "#/$defs/size"},
            "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        },
    }
    props = to_openai_schema(schema)["properties"]
    assert props["mood"] == {"type": ["string", "null"], "enum": ["calm", "busy", None]}
    assert props["kind"] == {"enum": ["photo", None]}
    assert props["size"] == {"anyOf": [{"$ref": "#/$defs/size"}, {"type": "null"}]}
    assert props["either"] == {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}
    Draft202012Validator.check_schema(to_openai_schema(schema))


def test_nested_objects_and_unusual_keywords() -> None:
    schema = {
        "type": "object",
        "additionalProperties": True,
        "properties": {
            "box": {
                "type": "object",
                "properties": {"w": {"type": "integer", "minimum": 1, "maximum": 10000}},
                "required": ["w"],
            },
            "items": {"type": "array", "items": {"type": "string", "maxLength": 12}, "uniqueItems": True,
                      "minItems": 2},
            "when": {"type": "string", "format": "date", "title": "Date", "examples": ["2024-01-01"]},
            "code": {"type": "string", "format": "color-hex"},
        },
    }
    out = to_anthropic_schema(schema)
    assert out["additionalProperties"] is False
    box = out["properties"]["box"]
    assert box["additionalProperties"] is False
    assert box["properties"]["w"] == {"type": "integer", "description": "Between 1 and 10000"}
    items = out["properties"]["items"]
    assert items["items"] == {"type": "string", "description": "At most 12 characters"}
    assert items["description"] == "At least 2 items; no duplicate items"
    assert out["properties"]["when"] == {"type": "string", "format": "date"}  # annotations dropped
    assert out["properties"]["code"] == {"type": "string", "description": "Format: color-hex"}
    openai = to_openai_schema(schema)
    width = openai["properties"]["box"]["properties"]["w"]
    assert width == {"type": "integer", "minimum": 1, "maximum": 10000}


def test_transformed_schema_accepts_what_the_full_schema_accepts() -> None:
    preset = load_preset("ecommerce", categories=["女装"])
    answer = {"tags": ["连衣裙"], "category": "女装", "description": "碎花连衣裙", "color": "蓝色",
              "style": "田园"}
    for schema in (preset.schema, to_anthropic_schema(preset.schema), to_openai_schema(preset.schema)):
        assert Draft202012Validator(schema).is_valid(answer)


def test_describe_constraints() -> None:
    assert describe_constraints(load_preset("ecommerce", categories=["女装", "男装"]).schema) == [
        "tags: 1 to 5 items",
        "tags (each): must not be empty",
        'category: one of: "女装", "男装"',
        "description: at most 50 characters",
    ]
    assert "keywords: 10 to 30 items" in describe_constraints(load_preset("keywords").schema)
    assert "alt: 1 to 125 characters" in describe_constraints(load_preset("alt-text").schema)
    nested = {"type": "object", "properties": {"box": {"type": "object", "properties": {
        "w": {"type": "number", "exclusiveMinimum": 0}}}}}
    assert describe_constraints(nested) == ["box.w: greater than 0"]
