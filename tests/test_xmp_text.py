"""Titles and descriptions in XMP (language alternatives), read back with exiftool: the user's own text stays
unless --xmp-overwrite-text; imgtag's own text is replaced; one language gives one x-default entry."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from imgtag.export.xmp_embed import write_xmp_embed
from imgtag.export.xmp_sidecar import write_xmp
from imgtag.store import Store
from xmphelp import DATA, context, photo, row, tags

FIELDS = {"title": "西湖日落", "description": "游船在西湖上。", "keywords": ["西湖", "boat"]}


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "out") as s:
        yield s


def _langs(got: dict, prop: str) -> dict[str, str]:
    """{language: text} of one alternative as exiftool reports it (x-default under the bare name)."""
    prefix = f"XMP-dc:{prop}"
    return {("x-default" if k == prefix else k[len(prefix) + 1:]): v for k, v in got.items()
            if k == prefix or k.startswith(prefix + "-")}


def test_one_language_gives_one_x_default_entry(tmp_path: Path, store: Store) -> None:
    img = photo(tmp_path)
    write_xmp([row(img, FIELDS)], context(store, lang="zh"))
    got = tags(tmp_path / "photo.jpg.xmp")
    assert _langs(got, "Title") == {"x-default": "西湖日落"}
    assert _langs(got, "Description") == {"x-default": "游船在西湖上。"}
    # a sidecar an earlier imgtag wrote with the text twice (x-default and zh) is cleaned up
    old = (tmp_path / "photo.jpg.xmp").read_text(encoding="utf-8").replace(
        '<rdf:li xml:lang="x-default">西湖日落</rdf:li>',
        '<rdf:li xml:lang="x-default">西湖日落</rdf:li><rdf:li xml:lang="zh">西湖日落</rdf:li>')
    other = photo(tmp_path, "other.jpg")
    (tmp_path / "other.jpg.xmp").write_text(old, encoding="utf-8")
    write_xmp([row(other, dict(FIELDS, title="夕阳"))], context(store, lang="zh"))
    assert _langs(tags(tmp_path / "other.jpg.xmp"), "Title") == {"x-default": "夕阳"}


def test_other_languages_keep_x_default_and_get_ours_beside_them(tmp_path: Path, store: Store) -> None:
    img = photo(tmp_path, "DSCF1234.jpg")
    shutil.copyfile(DATA / "lightroom.xmp", tmp_path / "DSCF1234.xmp")  # title: x-default "Old title", pt
    write_xmp([row(img, FIELDS)], context(store, lang="zh"))
    got = tags(tmp_path / "DSCF1234.xmp")
    # the user's title stays whole; the description is new, and with no other language, one entry
    assert _langs(got, "Title") == {"x-default": "Old title", "pt": "Título antigo"}
    assert _langs(got, "Description") == {"x-default": "游船在西湖上。"}


def test_users_title_and_description_are_kept_and_counted(tmp_path: Path, store: Store) -> None:
    mine = photo(tmp_path, "mine.jpg")
    subprocess.run(["exiftool", "-q", "-o", str(tmp_path / "mine.jpg.xmp"), "-XMP-dc:Title=Grandma at the lake",
                    "-XMP-dc:Description=Summer 1998", "-XMP-dc:Subject=family", str(mine)], check=True)
    fresh = photo(tmp_path, "fresh.jpg")
    ctx = context(store, lang="zh")
    write_xmp([row(mine, FIELDS), row(fresh, FIELDS)], ctx)
    got = tags(tmp_path / "mine.jpg.xmp")
    assert _langs(got, "Title") == {"x-default": "Grandma at the lake"}
    assert _langs(got, "Description") == {"x-default": "Summer 1998"}
    assert got["XMP-dc:Subject"] == ["family", "西湖", "boat"]  # keywords are still added
    assert any("kept 1 title and 1 description" in n and "xmp_overwrite_text" in n for n in ctx.notes), ctx.notes

    # imgtag's own text is replaced when the answer changes; the user's still is not
    changed = dict(FIELDS, title="夕阳", description="湖上的船。")
    write_xmp([row(mine, changed), row(fresh, changed)], context(store, lang="zh"))
    assert _langs(tags(tmp_path / "fresh.jpg.xmp"), "Title") == {"x-default": "夕阳"}
    assert _langs(tags(tmp_path / "fresh.jpg.xmp"), "Description") == {"x-default": "湖上的船。"}
    assert _langs(tags(tmp_path / "mine.jpg.xmp"), "Title") == {"x-default": "Grandma at the lake"}

    # a user who removes imgtag's title gets it back; one who edits it keeps the edit
    ctx = context(store, lang="zh")
    text = (tmp_path / "fresh.jpg.xmp").read_text(encoding="utf-8").replace(">夕阳<", ">Sunset, my words<")
    (tmp_path / "fresh.jpg.xmp").write_text(text, encoding="utf-8")
    write_xmp([row(fresh, dict(changed, title="别的"))], ctx)
    assert _langs(tags(tmp_path / "fresh.jpg.xmp"), "Title") == {"x-default": "Sunset, my words"}
    assert any("kept 1 title" in n for n in ctx.notes), ctx.notes

    # --xmp-overwrite-text: the user asked for ours everywhere
    ctx = context(store, lang="zh", xmp_overwrite_text=True)
    write_xmp([row(mine, changed), row(fresh, changed)], ctx)
    assert _langs(tags(tmp_path / "mine.jpg.xmp"), "Title") == {"x-default": "夕阳"}
    assert _langs(tags(tmp_path / "mine.jpg.xmp"), "Description") == {"x-default": "湖上的船。"}
    assert _langs(tags(tmp_path / "fresh.jpg.xmp"), "Title") == {"x-default": "夕阳"}
    assert not any("kept" in n for n in ctx.notes), ctx.notes


def test_embedded_title_description_and_iptc_caption_of_the_user_stay(tmp_path: Path, store: Store) -> None:
    img = photo(tmp_path, "mine.jpg")
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-XMP-dc:Title=Grandma", "-XMP-dc:Description=Summer 1998",
                    "-IPTC:Caption-Abstract=Summer 1998", str(img)], check=True)
    ctx = context(store, lang="zh")
    assert write_xmp_embed([row(img, FIELDS)], ctx) == [img]
    got = tags(img)
    assert got["XMP-dc:Title"] == "Grandma" and got["XMP-dc:Description"] == "Summer 1998"
    assert got["IPTC:Caption-Abstract"] == "Summer 1998"
    assert got["XMP-dc:Subject"] == FIELDS["keywords"]
    assert any("kept 1 title and 1 description" in n for n in ctx.notes), ctx.notes
    write_xmp_embed([row(img, FIELDS)], context(store, lang="zh", xmp_overwrite_text=True))
    got = tags(img)
    assert got["XMP-dc:Title"] == "西湖日落" and got["IPTC:Caption-Abstract"] == FIELDS["description"]


def test_cli_says_what_was_kept_and_overwrite_text_replaces_it(tmp_path: Path, fake_anthropic_factory,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from imagegen import make_images, run_cli

    folder = tmp_path / "in"
    make_images(folder, 2)
    subprocess.run(["exiftool", "-q", "-o", str(folder / "img_0000.jpg.xmp"), "-XMP-dc:Title=My own title",
                    str(folder / "img_0000.jpg")], check=True)
    out = tmp_path / "o"
    code, output = run_cli(["run", str(folder), "--out", str(out), "-q", "--format", "xmp"],
                           fake_anthropic_factory().env(), monkeypatch)
    assert code == 0, output
    assert "xmp: kept 1 title that imgtag did not write (in 1 sidecar); --xmp-overwrite-text replaces them" in output
    assert tags(folder / "img_0000.jpg.xmp")["XMP-dc:Title"] == "My own title"
    ours = tags(folder / "img_0001.jpg.xmp")["XMP-dc:Title"]
    code, output = run_cli(["export", "--out", str(out), "--xmp-overwrite-text"], {}, monkeypatch)
    assert code == 0 and "xmp: kept" not in output, output
    assert tags(folder / "img_0000.jpg.xmp")["XMP-dc:Title"] not in ("My own title", None)
    assert tags(folder / "img_0001.jpg.xmp")["XMP-dc:Title"] == ours
