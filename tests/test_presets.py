"""Presets: built-ins, versioning, language, categories, user files (valid and invalid)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from imgtag.presets import Preset, PresetError, builtin_names, compute_version, load_preset

EXPECTED_FIELDS = {
    "ecommerce": (["tags", "category", "description", "color", "style"], ["tags"]),
    "keywords": (["title", "description", "keywords"], ["keywords"]),
    "alt-text": (["alt", "title", "long_description"], []),
    "caption": (["short_caption", "detailed_caption", "tags"], ["tags"]),
    "ocr": (["text", "language", "has_text"], []),
}


# -- built-ins ---------------------------------------------------------------------------------------


def test_builtin_names() -> None:
    assert builtin_names() == ["ecommerce", "keywords", "alt-text", "caption", "ocr"]


@pytest.mark.parametrize("name", builtin_names())
def test_builtin_loads(name: str) -> None:
    preset = load_preset(name)
    assert isinstance(preset, Preset)
    assert preset.name == name
    assert (preset.fields, preset.list_fields) == EXPECTED_FIELDS[name]
    assert re.fullmatch(r"[0-9a-f]{12}", preset.version)
    assert preset.description and "\n" not in preset.description
    assert preset.system and preset.instruction
    assert "image" in preset.instruction  # the image is sent first; the instruction refers to it
    assert preset.detail in ("low", "standard", "high")
    assert 0 < preset.expected_output_tokens <= preset.max_output_tokens
    assert preset.lang is None
    Draft202012Validator.check_schema(preset.schema)
    assert preset.schema["additionalProperties"] is False


@pytest.mark.parametrize("name", builtin_names())
def test_builtin_files_pass_the_full_check_a_user_file_gets(name: str) -> None:
    """load_preset skips the meta-schema check for built-ins (jsonschema would cost every start ~25 ms):
    this is where each built-in schema is checked against it, as a user's preset is at load."""
    from imgtag.presets.checks import check_complete
    from imgtag.presets.model import _builtin_data

    data = _builtin_data(name)
    check_complete(data, f"presets/builtin/{name}.toml", meta_schema=True)
    Draft202012Validator.check_schema(data["schema"])


def test_user_presets_still_get_the_meta_schema_check(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('extends = "caption"\n[schema.properties.short_caption]\nmaxLength = "ten"\n', encoding="utf-8")
    with pytest.raises(PresetError, match="maxLength"):
        load_preset(str(path))


def test_builtin_constraints_match_spec() -> None:
    props = load_preset("ecommerce").schema["properties"]
    assert (props["tags"]["minItems"], props["tags"]["maxItems"]) == (1, 5)
    assert props["description"]["maxLength"] == 50
    assert "enum" not in props["category"]
    props = load_preset("keywords").schema["properties"]
    assert (props["keywords"]["minItems"], props["keywords"]["maxItems"]) == (10, 30)
    assert load_preset("alt-text").schema["properties"]["alt"]["maxLength"] == 125
    caption = load_preset("caption").schema
    assert "tags" not in caption["required"]
    ocr = load_preset("ocr")
    assert ocr.detail == "high"
    assert ocr.schema["properties"]["has_text"]["type"] == "boolean"


@pytest.mark.parametrize("name", builtin_names())
def test_version_is_stable(name: str) -> None:
    assert load_preset(name).version == load_preset(name).version
    assert load_preset(name, lang="zh").version == load_preset(name, lang="zh").version


def test_versions_differ_between_builtins() -> None:
    versions = {load_preset(n).version for n in builtin_names()}
    assert len(versions) == len(builtin_names())


def test_version_changes_with_lang_and_categories() -> None:
    base = load_preset("ecommerce")
    zh = load_preset("ecommerce", lang="zh")
    ja = load_preset("ecommerce", lang="ja")
    cats = load_preset("ecommerce", categories=["女装", "男装"])
    other_cats = load_preset("ecommerce", categories=["女装", "童装"])
    assert len({base.version, zh.version, ja.version, cats.version, other_cats.version}) == 5
    # Spelling variants of one language are one language.
    assert load_preset("ecommerce", lang="ZH").version == zh.version
    assert load_preset("ecommerce", lang="").version == base.version


def test_version_covers_each_answer_affecting_input() -> None:
    p = load_preset("ecommerce")
    args = dict(system=p.system, instruction=p.instruction, schema=p.schema, detail=p.detail,
                max_output_tokens=p.max_output_tokens, lang=p.lang, guide=p.guide, compact_system=p.compact_system)
    assert compute_version(**args) == p.version
    changed_schema = {**p.schema, "properties": {**p.schema["properties"], "extra": {"type": "string"}}}
    reordered = {**p.schema, "properties": dict(reversed(list(p.schema["properties"].items())))}
    variants = [
        {"system": p.system + " Be brief."},
        {"instruction": p.instruction + " "},
        {"schema": changed_schema},
        {"schema": reordered},
        {"detail": "high"},
        {"max_output_tokens": p.max_output_tokens + 1},
        {"lang": "en"},
        {"compact_system": p.compact_system + " Be brief."},
    ]
    versions = {compute_version(**{**args, **v}) for v in variants}
    assert p.version not in versions and len(versions) == len(variants)


def test_language_instruction() -> None:
    zh = load_preset("ecommerce", lang="zh")
    assert zh.lang == "zh"
    assert "Chinese (Simplified)" in zh.system
    assert zh.system.startswith(load_preset("ecommerce").system)
    assert "Chinese (Traditional)" in load_preset("ecommerce", lang="zh-TW").system
    for code, name in [("en", "English"), ("ja", "Japanese"), ("ko", "Korean"), ("fr", "French"),
                       ("de", "German"), ("es", "Spanish"), ("pt", "Portuguese"), ("it", "Italian"),
                       ("ru", "Russian")]:
        assert f"in {name}" in load_preset("keywords", lang=code).system
    # Unknown codes and free text are passed through as written.
    assert "in xx" in load_preset("keywords", lang="xx").system
    assert "in Cantonese" in load_preset("keywords", lang="Cantonese").system


def test_ocr_transcription_is_never_translated() -> None:
    system = load_preset("ocr", lang="zh").system
    assert "Exception: text, language" in system


def test_categories_become_enum() -> None:
    preset = load_preset("ecommerce", categories=["女装", " 男装 ", "女装", "鞋靴"])
    assert preset.schema["properties"]["category"]["enum"] == ["女装", "男装", "鞋靴"]
    # Listed in the prompt too, for servers that do not enforce the schema.
    assert '- category: one of: "女装", "男装", "鞋靴"' in preset.system
    assert preset.instruction == load_preset("ecommerce").instruction
    # The built-in itself is untouched (no shared mutable state between loads).
    assert "enum" not in load_preset("ecommerce").schema["properties"]["category"]


def test_categories_need_a_category_field() -> None:
    with pytest.raises(PresetError, match="category"):
        load_preset("keywords", categories=["a"])
    with pytest.raises(PresetError, match="non-empty"):
        load_preset("ecommerce", categories=["ok", "  "])


def test_unknown_preset_name() -> None:
    with pytest.raises(PresetError, match="unknown preset 'shop'"):
        load_preset("shop")


# -- user files --------------------------------------------------------------------------------------

VALID_TOML = '''
name = "shop"
description = "My shop's product tags"
detail = "low"
max_output_tokens = 800
expected_output_tokens = 120
lang = "zh"

system = """
You tag product photos for a furniture shop.
"""
instruction = "Tag the furniture in the image."

[schema]
type = "object"
required = ["tags", "room"]

[schema.properties.tags]
type = "array"
maxItems = 8
items = { type = "string" }

[schema.properties.room]
type = "string"
enum = ["living room", "bedroom", "kitchen"]

[schema.properties.dimensions]
type = "object"
properties = { width_cm = { type = "number" }, height_cm = { type = "number" } }
'''

VALID_YAML = """
description: Alt text for a museum collection
system: |
  You describe museum objects for visitors who cannot see them.
instruction: Describe the object in the image.
detail: high
max_output_tokens: 600
schema:
  type: object
  required: [alt, period]
  properties:
    alt:
      type: string
      maxLength: 150
    period:
      type: string
      description: Historical period, if it can be seen.
    materials:
      type: array
      items: {type: string}
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_valid_toml_file(tmp_path: Path) -> None:
    preset = load_preset(write(tmp_path, "shop.toml", VALID_TOML))
    assert preset.name == "shop"
    assert preset.description == "My shop's product tags"
    assert preset.fields == ["tags", "room", "dimensions"]
    assert preset.list_fields == ["tags"]
    assert preset.detail == "low" and preset.max_output_tokens == 800 and preset.expected_output_tokens == 120
    assert preset.lang == "zh" and "Chinese (Simplified)" in preset.system
    assert preset.system.startswith("You tag product photos")
    # Objects are closed unless the file says otherwise, nested ones too.
    assert preset.schema["additionalProperties"] is False
    assert preset.schema["properties"]["dimensions"]["additionalProperties"] is False
    # --lang beats the file's own lang.
    assert load_preset(write(tmp_path, "shop.toml", VALID_TOML), lang="en").lang == "en"


def test_valid_yaml_file(tmp_path: Path) -> None:
    for suffix in (".yaml", ".yml"):
        preset = load_preset(write(tmp_path, f"museum{suffix}", VALID_YAML))
        assert preset.name == "museum"  # no name key: the file name
        assert preset.fields == ["alt", "period", "materials"]
        assert preset.list_fields == ["materials"]
        assert preset.detail == "high"
        assert preset.expected_output_tokens <= preset.max_output_tokens == 600
        assert preset.lang is None


def test_same_preset_in_toml_and_yaml_has_same_version(tmp_path: Path) -> None:
    toml_text = PROMPTS + SCHEMA_OK
    yaml_text = "system: S\ninstruction: I\nschema:\n  type: object\n  properties:\n    a: {type: string}\n"
    assert load_preset(write(tmp_path, "a.toml", toml_text)).version == load_preset(
        write(tmp_path, "b.yaml", yaml_text)
    ).version


def test_extends_builtin(tmp_path: Path) -> None:
    text = """
extends = "ecommerce"
name = "shop"

[schema]
required = ["material"]

[schema.properties.tags]
maxItems = 8

[schema.properties.material]
type = "string"
description = "Main visible material."
"""
    preset = load_preset(write(tmp_path, "shop.toml", text), lang="zh")
    base = load_preset("ecommerce", lang="zh")
    assert preset.fields == [*base.fields, "material"]
    assert preset.schema["required"] == [*base.schema["required"], "material"]
    tags = preset.schema["properties"]["tags"]
    assert tags["maxItems"] == 8 and tags["minItems"] == 1 and tags["items"]["type"] == "string"
    # The prompt's Limits block follows the override, so prompt and schema never disagree.
    assert "- tags: 1 to 8 items" in preset.system and "1 to 5 items" not in preset.system
    assert preset.system.replace("1 to 8", "1 to 5") == base.system
    assert preset.instruction == base.instruction
    assert preset.version != base.version
    assert "customised in shop.toml" in preset.description


def test_compact_system_follows_the_limits_and_yields_to_a_users_own_system(tmp_path: Path) -> None:
    base = load_preset("ecommerce", lang="zh", categories=["上衣", "裤子"])
    # The short prompt sent where the prefix cannot be cached carries the same limits and language sentence.
    assert base.compact_system and len(base.compact_system) < 0.6 * len(base.system)
    assert '- category: one of: "上衣", "裤子"' in base.compact_system and "Chinese" in base.compact_system
    # A user preset with its own system prompt never gets the built-in's short version of other rules...
    own = load_preset(write(tmp_path, "own.toml", 'extends = "ecommerce"\nsystem = "Only tag shoes."\n'))
    assert own.compact_system == ""
    # ...unless it gives its own, which is checked like any key.
    both = load_preset(write(tmp_path, "both.toml",
                             'extends = "ecommerce"\nsystem = "Only tag shoes."\nsystem_compact = "Shoes."\n'))
    assert both.compact_system.startswith("Shoes.")
    with pytest.raises(PresetError, match="system_compact"):
        load_preset(write(tmp_path, "typo.toml", 'extends = "ecommerce"\nsystem_compat = "x"\n'))


def test_extends_with_only_description_keeps_version(tmp_path: Path) -> None:
    # Description and name do not change the answer, so paid results stay reusable.
    path = write(tmp_path, "mine.yaml", "extends: caption\nname: mine\ndescription: my captions\n")
    assert load_preset(path).version == load_preset("caption").version
    assert load_preset(path).description == "my captions"


def test_extends_remove_fields_and_retype(tmp_path: Path) -> None:
    text = """
extends: caption
remove_fields: [tags]
schema:
  properties:
    short_caption: {type: array, items: {type: string}}
"""
    preset = load_preset(write(tmp_path, "c.yaml", text))
    assert preset.fields == ["short_caption", "detailed_caption"]
    # A new type replaces the property instead of inheriting string keywords.
    assert preset.schema["properties"]["short_caption"] == {"type": "array", "items": {"type": "string"}}
    assert preset.list_fields == ["short_caption"]


SCHEMA_OK = '\n[schema]\ntype = "object"\n[schema.properties.a]\ntype = "string"\n'
PROMPTS = 'system = "S"\ninstruction = "I"\n'

def schema_with(prop: str) -> str:
    return PROMPTS + f'[schema]\ntype = "object"\n[schema.properties.a]\n{prop}\n'


YAML_PROMPTS = "system: S\ninstruction: I\n"

INVALID_FILES = [
    ("unknown.toml", PROMPTS + "temperature = 0.2\n" + SCHEMA_OK, "unknown key 'temperature'"),
    ("typo.toml", PROMPTS + "max_tokens = 100\n" + SCHEMA_OK, "did you mean 'max_output_tokens'"),
    ("wrongtype.toml", PROMPTS + 'max_output_tokens = "1024"\n' + SCHEMA_OK,
     "'max_output_tokens' must be an integer"),
    ("five.toml", schema_with('type = "array"\nmaxItems = "five"\nitems = {type = "string"}'),
     "'schema.properties.a.maxItems' must be an integer, got 'five'"),
    ("badtype.toml", schema_with('type = "strng"'), "'schema.properties.a.type' must be a JSON type"),
    ("keyword.toml", schema_with('type = "array"\nmax_items = 5\nitems = {type = "string"}'),
     "unknown schema keyword 'max_items' at 'schema.properties.a' (did you mean 'maxItems'?)"),
    ("array.toml", PROMPTS + '[schema]\ntype = "array"\nitems = {type = "string"}\n',
     "must be an object schema"),
    ("noprops.toml", PROMPTS + '[schema]\ntype = "object"\nproperties = {}\n',
     "'schema.properties' is empty"),
    ("nosystem.toml", 'instruction = "I"\n' + SCHEMA_OK, "missing 'system'"),
    ("noinstruction.yaml", "system: S\nschema: {type: object, properties: {a: {type: string}}}\n",
     "missing 'instruction'"),
    ("noschema.toml", PROMPTS, "missing 'schema'"),
    ("tokens.toml", PROMPTS + "max_output_tokens = 100000\n" + SCHEMA_OK,
     "'max_output_tokens' must be between"),
    ("tokens0.toml", PROMPTS + "max_output_tokens = 0\n" + SCHEMA_OK, "'max_output_tokens' must be between"),
    ("detail.toml", PROMPTS + 'detail = "ultra"\n' + SCHEMA_OK,
     "'detail' must be one of low, standard, high, got 'ultra'"),
    ("syntax.toml", PROMPTS + 'detail = "low\n' + SCHEMA_OK, "TOML syntax error"),
    ("syntax.yaml", YAML_PROMPTS + "schema:\n  type: object\n   properties: [\n",
     "YAML syntax error at line"),
    ("list.yaml", "- system\n- instruction\n", "top level must be a mapping"),
    ("empty.yaml", "   \n", "file is empty"),
    ("extends.toml", 'extends = "products"\n', "'extends' must name a built-in preset"),
    ("remove.yaml", "extends: ecommerce\nremove_fields: [size]\n", "'remove_fields' names 'size'"),
    ("required.toml", PROMPTS + '[schema]\ntype = "object"\nrequired = ["b"]\n'
     '[schema.properties.a]\ntype = "string"\n', "'schema.required' lists 'b'"),
    ("items.toml", schema_with('type = "array"'),
     "'schema.properties.a' is an array without an 'items' schema"),
    ("untyped.toml", schema_with('description = "x"'), "'schema.properties.a' needs a 'type'"),
    ("impossible.toml", schema_with('type = "string"\nminLength = 10\nmaxLength = 5'),
     "can never be satisfied"),
    ("pattern.yaml", YAML_PROMPTS + "schema: {type: object, properties: {a: {type: string, pattern: '('}}}\n",
     "'schema.properties.a.pattern' is not valid JSON Schema"),
    ("untranslated.toml", PROMPTS + 'untranslated_fields = ["b"]\n' + SCHEMA_OK,
     "'untranslated_fields' names 'b'"),
    ("preset.json", '{"system": "S"}', "unsupported preset file type '.json'"),
]


@pytest.mark.parametrize(("filename", "text", "fragment"), INVALID_FILES, ids=[f[0] for f in INVALID_FILES])
def test_invalid_file_gives_one_clear_line(tmp_path: Path, filename: str, text: str, fragment: str) -> None:
    path = write(tmp_path, filename, text)
    with pytest.raises(PresetError) as info:
        load_preset(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert fragment in message


def test_syntax_errors_carry_line_numbers(tmp_path: Path) -> None:
    with pytest.raises(PresetError, match=r"line 3"):
        load_preset(write(tmp_path, "bad.toml", 'system = "S"\ninstruction = "I"\ndetail = = 1\n'))
    with pytest.raises(PresetError, match=r"line 5, column 2"):
        load_preset(write(tmp_path, "bad.yaml", "system: S\ninstruction: I\nschema:\n  - a\n b: c\n"))


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.toml")
    with pytest.raises(PresetError, match=r"nope\.toml: file not found"):
        load_preset(path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "gbk.toml"
    path.write_bytes('system = "你好"\n'.encode("gbk"))
    with pytest.raises(PresetError, match="not UTF-8"):
        load_preset(str(path))


def test_at_least_eight_distinct_invalid_kinds() -> None:
    assert len({fragment for _, _, fragment in INVALID_FILES}) >= 8
