"""Words that say it once and say it right (issue 17 item 13): a cause is not doubled ("too_small: too small"),
counts agree with their nouns, a caption conflict names its files, and the contact sheet does not call an
image it decoded "not an image we could read"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exportrows import context, image, ok
from imgtag.app.progress import resume_note
from imgtag.export.captions import write_txt
from imgtag.export.contact_sheet import write_contact_sheet
from imgtag.util.words import failure_text
from test_export_html import chromium, needs_chromium

ANSWER = {"tags": ["red"], "category": "shoe", "description": "A red shoe.", "color": "red", "style": "x"}
TOO_SMALL = "too small: 256x171 px (short side under 200 px; use --min-side 0 to tag anyway)"
BOMB = "decompression bomb: declares 65535x32767 (2,147 MP), limit 100 MP (raise --max-megapixels to allow it)"


@pytest.mark.parametrize(("kind", "message", "said"), [
    ("too_small", TOO_SMALL, TOO_SMALL),
    ("bomb", BOMB, BOMB),
    ("corrupt", "corrupt: bad Huffman table", "corrupt: bad Huffman table"),
    ("corrupt", "cannot identify image file", "corrupt: cannot identify image file"),
    ("refusal", "the model declined", "refusal: the model declined"),
    ("truncated", "", "truncated"),
])
def test_a_cause_is_named_once(kind: str, message: str, said: str) -> None:
    assert failure_text(kind, message) == said


def test_one_file_done_before_is_singular() -> None:
    note = resume_note(files=1, done_before=1, spent_run=0.001, spent_to_date=0.002)
    assert note is not None and "1 of 1 file already done" in note and "1 files" not in note
    assert "1 of 4 files already done" in (resume_note(files=4, done_before=1, spent_run=0.0, spent_to_date=0.0) or "")


def test_a_rerun_does_not_call_files_skipped_again_new(tmp_path, fake_anthropic, monkeypatch) -> None:
    """A rerun of a folder with a too-small image said "1 file new this run": it was skipped again, not new."""
    from PIL import Image

    from imagegen import make_images, run_cli

    make_images(tmp_path / "in", 3)
    Image.new("RGB", (120, 90), (10, 20, 30)).save(tmp_path / "in" / "tiny.jpg")
    args = ["run", str(tmp_path / "in"), "--out", str(tmp_path / "o")]
    assert run_cli(args, fake_anthropic.env(), monkeypatch)[0] == 0
    code, again = run_cli(args, fake_anthropic.env(), monkeypatch)
    assert code == 0, again
    assert "new this run" not in again and "3 of 4 files already done by earlier runs" in again, again


def test_a_caption_conflict_names_the_files(tmp_path: Path) -> None:
    root = tmp_path / "in"
    first, second = image(root / "a.jpg"), image(root / "a.png")
    ctx = context(tmp_path / "out", txt_template="{color}")
    write_txt(iter([ok(first, root, ANSWER), ok(second, root, ANSWER)]), ctx)
    [note] = ctx.notes
    assert "1 conflict" in note
    assert "a.png" in note and "a.txt" in note and "a.jpg" in note, note


@needs_chromium
def test_the_contact_sheet_says_why_a_decoded_image_has_no_preview(tmp_path: Path) -> None:
    root = tmp_path / "in"
    small = image(root / "small.dng")  # decoded, then skipped for its size: it is an image we could read
    row = ok(small, root, status="skipped", fields=None, sha256=None, usage=None, cost_usd=None, model=None,
             provider=None, mode=None, error={"type": "too_small", "message": TOO_SMALL})
    [path] = write_contact_sheet(iter([row]), context(tmp_path / "out"))
    dom = chromium(path.as_uri(), tmp_path, "--dump-dom")
    assert "not an image we could read" not in dom
    assert "too small to tag" in dom
    errors = re.findall(r'<div class="error">([^<]*)</div>', dom)
    assert errors == [TOO_SMALL.replace("<", "&lt;")], errors
