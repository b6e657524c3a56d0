"""Parsing model output: safe unwrapping only, and validation against the full preset schema."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgtag.presets import load_preset
from imgtag.validate.parse import Parsed, parse_object, parse_output

SCHEMA = load_preset("ecommerce").schema
CATEGORIES = ["女装", "男装", "鞋靴", "Home & Garden"]
SCHEMA_CATS = load_preset("ecommerce", categories=CATEGORIES).schema

GOOD: dict[str, Any] = {
    "tags": ["连衣裙", "碎花", "夏季"],
    "category": "女装",
    "description": "轻薄雪纺碎花连衣裙,收腰设计,适合夏日出游",
    "color": "蓝色",
    "style": "田园",
}


def dumps(obj: Any, **kw: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, **kw)


def ok(parsed: Parsed) -> dict[str, Any]:
    assert parsed.error is None, parsed.error
    assert parsed.fields is not None
    return parsed.fields


def failed(parsed: Parsed) -> str:
    assert parsed.fields is None
    assert parsed.error and "\n" not in parsed.error
    return parsed.error


# -- unwrapping --------------------------------------------------------------------------------------


def test_plain_json() -> None:
    parsed = parse_output(dumps(GOOD), SCHEMA)
    assert ok(parsed) == GOOD and parsed.repaired is None
    assert ok(parse_output("\ufeff  " + dumps(GOOD, indent=2) + "\n", SCHEMA)) == GOOD


FENCES = ["```json\n{}\n```", "```\n{}\n```", "  ```JSON\n{}```  ", "```json\n{}\n```\n"]


@pytest.mark.parametrize("fence", FENCES, ids=["json", "bare", "padded", "trailing-newline"])
def test_fenced(fence: str) -> None:
    parsed = parse_output(fence.replace("{}", dumps(GOOD)), SCHEMA)
    assert ok(parsed) == GOOD
    assert parsed.repaired == "stripped code fence"


def test_prose_wrapped_with_braces_inside_strings() -> None:
    answer = {**GOOD, "description": 'a "quoted" {brace} \\ and } more', "style": "}{"}
    text = f"Sure! Here is the JSON {{as requested}}:\n\n{dumps(answer)}\n\nLet me know {{if}} ..."
    parsed = parse_output(text, SCHEMA)
    assert ok(parsed) == answer
    assert parsed.repaired == "extracted JSON object from prose"


def test_fence_marks_inside_strings_survive() -> None:
    answer = {**GOOD, "description": "```json {x}```", "style": "```"}
    for text in (f"```json\n{dumps(answer)}\n```", f"```\n{dumps(answer)}```"):
        assert ok(parse_output(text, SCHEMA)) == answer


def test_fence_inside_prose() -> None:
    text = f"Here you go:\n```json\n{dumps(GOOD)}\n```\nThanks."
    assert ok(parse_output(text, SCHEMA)) == GOOD


def test_nested_objects() -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["subject", "box"],
        "properties": {
            "subject": {"type": "string"},
            "box": {
                "type": "object",
                "additionalProperties": False,
                "required": ["x", "y"],
                "properties": {"x": {"type": "integer"}, "y": {"type": "integer"},
                               "meta": {"type": "object", "properties": {"k": {"type": "string"}}}},
            },
        },
    }
    answer = {"subject": "cat", "box": {"x": 1, "y": 2, "meta": {"k": "{v}"}}}
    assert ok(parse_output("Result: " + dumps(answer) + " done", schema)) == answer
    error = failed(parse_output(dumps({"subject": "cat", "box": {"x": "1", "y": 2}}), schema))
    assert error == "schema: box.x: expected integer, got string"
    error = failed(parse_output(dumps({"subject": "cat", "box": {"x": 1}}), schema))
    assert error == "schema: box: missing required field 'y'"


@pytest.mark.parametrize("cut", [1, 20, 41, 80, -2, -1])
def test_truncated_json_is_an_error_not_repaired(cut: int) -> None:
    text = dumps(GOOD)[:cut]
    assert failed(parse_output(text, SCHEMA)).startswith("truncated JSON")
    assert failed(parse_output("```json\n" + text, SCHEMA)).startswith("truncated JSON")
    assert failed(parse_output("Here it is: " + text, SCHEMA)).startswith("truncated JSON")


def test_truncated_json_never_yields_a_nested_object() -> None:
    schema = {"type": "object", "properties": {"b": {"type": "integer"}}}
    text = 'Here: {"a": {"b": 1}, "c": "cut off he'
    assert failed(parse_output(text, schema)).startswith("truncated JSON: the object starting at char 6")
    fenced = '```json\n{"a": {"b": 1}, "c": "cut'
    assert failed(parse_output(fenced, schema)).startswith("truncated JSON")


def test_invalid_json_reports_position() -> None:
    error = failed(parse_output('{"tags": ["a"] "category": "x"}', SCHEMA))
    assert error == "not valid JSON: Expecting ',' delimiter at char 15"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty output"),
        ("   \n", "empty output"),
        ("I cannot help with that.", "no JSON object in the output"),
        ("[1, 2]", "expected a JSON object, got array"),
        ('"just a string"', "expected a JSON object, got string"),
        ('{"tags": ["a"], "tags": ["b"]}', "duplicate key 'tags'"),
        ('{"tags": NaN}', "NaN is not valid JSON"),
        ('{"tags": ["a",], "x": 1}', "not valid JSON"),
    ],
)
def test_not_json(text: str, fragment: str) -> None:
    assert fragment in failed(parse_output(text, SCHEMA))


# -- schema ------------------------------------------------------------------------------------------


def test_description_length_counts_characters_not_bytes() -> None:
    assert ok(parse_output(dumps({**GOOD, "description": "好" * 50}), SCHEMA))["description"] == "好" * 50
    error = failed(parse_output(dumps({**GOOD, "description": "好" * 51}), SCHEMA))
    assert error == "schema: description: '" + "好" * 20 + "…' is longer than 50 characters (51)"


def test_whitespace_is_stripped_but_nothing_is_cut() -> None:
    padded = {**GOOD, "description": "  " + "好" * 50 + "\n", "tags": [" 连衣裙 "]}
    fields = ok(parse_output(dumps(padded), SCHEMA))
    assert fields["description"] == "好" * 50 and fields["tags"] == ["连衣裙"]
    assert "longer than 50" in failed(parse_output(dumps({**GOOD, "description": " " + "好" * 51}), SCHEMA))


def test_too_many_tags() -> None:
    error = failed(parse_output(dumps({**GOOD, "tags": list("abcdef")}), SCHEMA))
    assert error == "schema: tags: expected at most 5 items, got 6"
    assert failed(parse_output(dumps({**GOOD, "tags": []}), SCHEMA)) == (
        "schema: tags: expected at least 1 item, got 0"
    )
    assert failed(parse_output(dumps({**GOOD, "tags": ["a", " "]}), SCHEMA)) == (
        "schema: tags[1]: must not be empty"
    )


def test_wrong_types() -> None:
    error = failed(parse_output(dumps({**GOOD, "color": 3, "tags": "a|b"}), SCHEMA))
    assert "tags: expected array, got string" in error
    assert "color: expected string, got integer" in error


def test_extra_and_missing_properties() -> None:
    extra = {**GOOD, "price": "9.99"}
    assert failed(parse_output(dumps(extra), SCHEMA)) == "schema: unexpected field 'price'"
    missing = {k: v for k, v in GOOD.items() if k not in ("color", "style")}
    assert failed(parse_output(dumps(missing), SCHEMA)) == "schema: missing required fields 'color', 'style'"


def test_enum_violation() -> None:
    error = failed(parse_output(dumps({**GOOD, "category": "童装"}), SCHEMA_CATS))
    assert error.startswith("schema: category: '童装' is not one of '女装', '男装'")
    assert ok(parse_output(dumps({**GOOD, "category": " 男装 "}), SCHEMA_CATS))["category"] == "男装"


def test_many_errors_are_summarised_on_one_line() -> None:
    bad = {"tags": list("abcdefg"), "category": 1, "description": "x" * 60, "color": None, "style": [],
           "z": 0}
    error = failed(parse_output(dumps(bad), SCHEMA))
    assert error.startswith("schema: ") and error.endswith("more)")
    assert error.count(";") == 2


def test_parse_object_for_tool_inputs() -> None:
    assert ok(parse_object(dict(GOOD), SCHEMA)) == GOOD
    assert parse_object(dict(GOOD), SCHEMA).repaired is None
    assert failed(parse_object(["not", "a", "dict"], SCHEMA)) == "expected a JSON object, got array"
    original = {**GOOD, "color": " 蓝色 "}
    assert ok(parse_object(original, SCHEMA))["color"] == "蓝色"
    assert original["color"] == " 蓝色 "  # the caller's object is not modified


def test_null_for_optional_field_means_absent() -> None:
    # OpenAI strict mode makes optional fields nullable; the full schema says "may be missing".
    schema = load_preset("caption").schema
    answer = {"short_caption": "A cat.", "detailed_caption": "A photo of a cat.", "tags": None}
    assert ok(parse_output(dumps(answer), schema)) == {k: v for k, v in answer.items() if k != "tags"}
    # ...but a null in a required field is still an error.
    null_required = {**answer, "short_caption": None}
    assert "expected string, got null" in failed(parse_output(dumps(null_required), schema))


def test_ocr_text_keeps_inner_whitespace() -> None:
    schema = load_preset("ocr").schema
    answer = {"text": "第一行\n\n  Second | line  ", "language": "zh-Hans", "has_text": True}
    assert ok(parse_output(dumps(answer), schema))["text"] == "第一行\n\n  Second | line"
    assert "language" in failed(parse_output(dumps({**answer, "language": "Chinese"}), schema))


# -- property: valid answers round-trip unchanged, however they are wrapped ---------------------------

# Values as a model would send them: surrounding whitespace is normalised away, so generate none.
stripped = st.text().map(str.strip)
nonempty = st.text(min_size=1).map(str.strip).filter(bool)


def ecommerce_answers(categories: list[str] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({
        "tags": st.lists(nonempty, min_size=1, max_size=5),
        "category": st.sampled_from(categories) if categories else stripped,
        "description": st.text(max_size=50).map(str.strip),
        "color": stripped,
        "style": stripped,
    })


WRAPPERS = [
    "{}",
    "```json\n{}\n```",
    "```\n{}```",
    "Here is the analysis of the image:\n\n{}\n\nLet me know if you need anything else!",
    "{} ",
]


@settings(max_examples=150, deadline=None, database=None)
@given(answer=ecommerce_answers(), wrapper=st.sampled_from(WRAPPERS), indent=st.sampled_from([None, 2]))
def test_valid_answers_round_trip(answer: dict[str, Any], wrapper: str, indent: int | None) -> None:
    text = wrapper.replace("{}", dumps(answer, indent=indent))
    assert ok(parse_output(text, SCHEMA)) == answer


@settings(max_examples=50, deadline=None, database=None)
@given(answer=ecommerce_answers(CATEGORIES), wrapper=st.sampled_from(WRAPPERS))
def test_valid_answers_round_trip_with_categories(answer: dict[str, Any], wrapper: str) -> None:
    assert ok(parse_output(wrapper.replace("{}", dumps(answer)), SCHEMA_CATS)) == answer
    assert ok(parse_object(answer, SCHEMA_CATS)) == answer
