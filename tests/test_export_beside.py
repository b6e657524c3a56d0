"""Files written beside the originals: txt captions, JSON sidecars, Hugging Face metadata.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exportrows import HOSTILE, context, failed, image, ok, skipped
from imgtag.export.captions import check_template, render, write_txt
from imgtag.export.hf_metadata import write_metadata_jsonl
from imgtag.export.json_sidecar import write_json_sidecars
from imgtag.export.ledger import DictLedger

ANSWER = {"tags": ["red", "shoe", "=1+2"], "category": "鞋", "description": "A red shoe.\nSecond line",
          "color": "red", "style": "sporty"}


# -- txt ------------------------------------------------------------------------------------------


def test_txt_template_renders_fields_and_joins_lists_booru_style() -> None:
    assert render("{tags}", ANSWER) == "red, shoe, =1+2"
    assert render("a photo of {color} {category}, {{literal}}", ANSWER) == "a photo of red 鞋, {literal}"
    assert render("{description}", ANSWER) == "A red shoe. Second line"  # one line: kohya reads only the first
    with pytest.raises(ValueError, match="not a field of this preset"):
        check_template("{caption}", list(ANSWER))
    with pytest.raises(ValueError, match="lone"):
        check_template("{tags", list(ANSWER))


def test_txt_writes_beside_each_ok_image_and_never_silently_overwrites(tmp_path: Path) -> None:
    root = tmp_path / "in"
    a, b, c = image(root / "a.jpg"), image(root / "b.jpg"), image(root / "c.png")
    (root / "b.txt").write_text("my own caption", encoding="utf-8")
    rows = [ok(a, root, ANSWER), ok(b, root, ANSWER), failed(c, root)]
    ledger = DictLedger()
    ctx = context(tmp_path / "out", txt_template="{tags}", ledger=ledger)
    assert write_txt(iter(rows), ctx) == []
    assert (root / "a.txt").read_bytes() == b"red, shoe, =1+2"
    assert (root / "b.txt").read_text(encoding="utf-8") == "my own caption"  # default: skip, and say so
    assert not (root / "c.txt").exists()  # failed: no caption
    # outside the CLI the note names the option as the Python API does
    assert "1 written" in ctx.notes[0] and "1 skipped" in ctx.notes[0] and "txt_existing" in ctx.notes[0]

    # A re-export rewrites our own file (the answer changed) and still leaves the user's alone.
    ctx = context(tmp_path / "out", txt_template="{color}", ledger=ledger)
    write_txt(iter(rows), ctx)
    assert (root / "a.txt").read_text(encoding="utf-8") == "red"
    assert (root / "b.txt").read_text(encoding="utf-8") == "my own caption"


@pytest.mark.parametrize(("how", "expected"), [
    ("overwrite", "red"), ("append", "my own caption, red"), ("prepend", "red, my own caption"),
])
def test_txt_existing_policies_are_stable_on_re_export(tmp_path: Path, how: str, expected: str) -> None:
    root = tmp_path / "in"
    a = image(root / "a.jpg")
    (root / "a.txt").write_text("my own caption\n", encoding="utf-8")
    ledger = DictLedger()
    for _ in range(2):  # appending twice must not append twice
        ctx = context(tmp_path / "out", txt_template="{color}", txt_existing=how, ledger=ledger)
        write_txt(iter([ok(a, root, ANSWER)]), ctx)
        assert (root / "a.txt").read_text(encoding="utf-8") == expected


def test_txt_never_writes_over_an_image_or_shares_a_file(tmp_path: Path) -> None:
    root = tmp_path / "in"
    weird = image(root / "odd.txt")  # a JPEG with a .txt name: its caption path is itself
    first, second = image(root / "a.jpg"), image(root / "a.png")
    before = weird.read_bytes()
    ctx = context(tmp_path / "out", txt_template="{color}")
    write_txt(iter([ok(weird, root, ANSWER), ok(first, root, ANSWER), ok(second, root, {**ANSWER, "color": "x"})]),
              ctx)
    assert weird.read_bytes() == before
    assert (root / "a.txt").read_text(encoding="utf-8") == "red"  # first in discovery order keeps a.txt
    assert "2 conflict" in ctx.notes[0]


def test_txt_that_cannot_be_written_is_counted_not_fatal(tmp_path: Path) -> None:
    root = tmp_path / "in"
    a, b = image(root / "a.jpg"), image(root / "b.jpg")
    (root / "a.txt").mkdir()  # in the way (works as root too, unlike a read-only folder)
    ctx = context(tmp_path / "out", txt_template="{color}")
    write_txt(iter([ok(a, root, ANSWER), ok(b, root, ANSWER)]), ctx)
    assert (root / "b.txt").read_text(encoding="utf-8") == "red"
    assert "1 written" in ctx.notes[0] and "1 failed" in ctx.notes[0] and "a.txt" in ctx.notes[0]


# -- json-sidecar -----------------------------------------------------------------------------------


def test_json_sidecar_per_image_with_its_own_name(tmp_path: Path) -> None:
    root = tmp_path / "in"
    a, a_png, b, c = image(root / "a.jpg"), image(root / "a.png"), image(root / "b.jpg"), root / "c.jpg"
    c.write_bytes(b"junk")
    (root / "a.jpg.json").write_text('{"takeout": true}', encoding="utf-8")  # another tool's sidecar
    ctx = context(tmp_path / "out")
    write_json_sidecars(iter([ok(a, root), ok(a_png, root, ANSWER), failed(b, root), skipped(c, root)]), ctx)
    doc = json.loads((root / "a.jpg.imgtag.json").read_text(encoding="utf-8"))
    assert doc["generator"] == "imgtag" and doc["file"] == "a.jpg" and doc["fields"] == HOSTILE
    assert json.loads((root / "a.png.imgtag.json").read_text(encoding="utf-8"))["fields"] == ANSWER
    failed_doc = json.loads((root / "b.jpg.imgtag.json").read_text(encoding="utf-8"))
    assert failed_doc["status"] == "failed" and failed_doc["error"]["message"] == "<b>refused</b> =1+2"
    assert not (root / "c.jpg.imgtag.json").exists()
    assert (root / "a.jpg.json").read_text(encoding="utf-8") == '{"takeout": true}'

    (root / "b.jpg.imgtag.json").write_text("user edited", encoding="utf-8")  # no longer ours: left alone
    ctx = context(tmp_path / "out", ledger=ctx.ledger)
    write_json_sidecars(iter([ok(b, root)]), ctx)
    assert (root / "b.jpg.imgtag.json").read_text(encoding="utf-8") == "user edited"
    assert "1 skipped" in ctx.notes[0]


# -- metadata.jsonl -----------------------------------------------------------------------------------


def test_metadata_jsonl_per_split_with_relative_file_names(tmp_path: Path) -> None:
    root = tmp_path / "data"
    rows = [ok(image(root / "train" / "cats" / "a.jpg"), root, ANSWER),
            ok(image(root / "train" / "b.jpg"), root, {**ANSWER, "tags": []}),
            failed(image(root / "train" / "c.jpg"), root),
            ok(image(root / "test" / "d.jpg"), root, HOSTILE),
            ok(image(root / "stray.jpg"), root, ANSWER)]
    ctx = context(tmp_path / "out")
    written = write_metadata_jsonl(iter(rows), ctx)
    assert sorted(written) == [root / "test" / "metadata.jsonl", root / "train" / "metadata.jsonl"]
    train = [json.loads(x) for x in (root / "train" / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [x["file_name"] for x in train] == ["cats/a.jpg", "b.jpg"]  # ok images only
    assert train[1]["tags"] == []
    test = [json.loads(x) for x in (root / "test" / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    assert test == [{"file_name": "d.jpg", **HOSTILE}]
    assert not (root / "metadata.jsonl").exists()
    assert "1 ok images left out" in ctx.notes[0]


def test_metadata_jsonl_never_clobbers_a_users_file(tmp_path: Path) -> None:
    root = tmp_path / "data"
    rows = [ok(image(root / "a.jpg"), root, ANSWER)]
    mine = root / "metadata.jsonl"
    mine.write_text('{"file_name": "a.jpg", "label": "cat"}\n', encoding="utf-8")
    ctx = context(tmp_path / "out")
    assert write_metadata_jsonl(iter(rows), ctx) == []
    assert mine.read_text(encoding="utf-8") == '{"file_name": "a.jpg", "label": "cat"}\n'
    assert ctx.refusals == [f"{mine} already exists and was not written by imgtag; move it away or pass "
                            "metadata_overwrite"]  # the option's name outside the CLI
    ctx = context(tmp_path / "out", metadata_overwrite=True)
    assert write_metadata_jsonl(iter(rows), ctx) == [mine] and not ctx.refusals
    # From now on it is ours: re-exporting replaces it without the flag.
    ctx2 = context(tmp_path / "out", ledger=ctx.ledger)
    assert write_metadata_jsonl(iter([ok(root / "a.jpg", root, {**ANSWER, "color": "blue"})]), ctx2) == [mine]
    assert json.loads(mine.read_text(encoding="utf-8"))["color"] == "blue"


def test_metadata_jsonl_loads_as_an_imagefolder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import datasets

    root = tmp_path / "data"
    rows = [ok(image(root / "train" / f"{i}.jpg", (i * 40, 0, 0)), root, {**ANSWER, "tags": [] if i else ["x"]})
            for i in range(4)]
    rows += [ok(image(root / "test" / "t.jpg"), root, HOSTILE), failed(image(root / "test" / "f.jpg"), root)]
    write_metadata_jsonl(iter(rows), context(tmp_path / "out"))
    ds = datasets.load_dataset("imagefolder", data_dir=str(root))
    assert ds["train"].num_rows == 4 and ds["test"].num_rows == 1  # one row per ok image
    assert ds["train"].features["tags"] == datasets.List(datasets.Value("string"))
    assert ds["test"][0]["description"] == HOSTILE["description"]
    assert ds["test"][0]["image"].size == (320, 240)
