"""digiKam reads its own digiKam:TagsList before dc:subject when a sidecar has one: merging into such a sidecar adds
our tags there too (as digiKam writes them: full paths with "/"), read back with exiftool."""

from __future__ import annotations

import shutil

import pytest

from imgtag.export.xmp_sidecar import write_xmp
from imgtag.store import Store
from xmphelp import DATA, as_list, context, photo, row, tags

USER = ["People/Grandma", "Events/Birthday 2023"]
KEYWORDS = {"title": "西湖日落", "description": "游船在西湖上。", "keywords": ["西湖", "sunset", "AC/DC"]}


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "out") as s:
        yield s


def test_tags_go_into_an_existing_tagslist_and_are_replaced_on_re_export(tmp_path, store):
    img = photo(tmp_path)
    sidecar = tmp_path / "photo.jpg.xmp"
    shutil.copyfile(DATA / "digikam.jpg.xmp", sidecar)
    ctx = context(store)
    write_xmp([row(img, KEYWORDS)], ctx)
    got = tags(sidecar)
    # "/" is digiKam's level separator: inside a keyword it becomes U+2215 so "AC/DC" stays one tag.
    assert got["XMP-digiKam:TagsList"] == [*USER, "西湖", "sunset", "AC\u2215DC"]
    assert as_list(got["XMP-dc:Subject"])[-3:] == ["西湖", "sunset", "AC/DC"]
    first = sidecar.read_bytes()
    write_xmp([row(img, KEYWORDS)], ctx)
    assert sidecar.read_bytes() == first  # stable
    write_xmp([row(img, dict(KEYWORDS, keywords=["harbour"]))], ctx)
    assert tags(sidecar)["XMP-digiKam:TagsList"] == [*USER, "harbour"]  # ours replaced, the user's kept


def test_hierarchical_fields_become_digikam_paths(tmp_path, store):
    img = photo(tmp_path)
    sidecar = tmp_path / "photo.jpg.xmp"
    shutil.copyfile(DATA / "digikam.jpg.xmp", sidecar)
    fields = {"tags": ["red", "shoe"], "category": "鞋", "description": "A red shoe.", "color": "red",
              "style": "sporty"}
    write_xmp([row(img, fields, preset="ecommerce")], context(store))
    got = tags(sidecar)["XMP-digiKam:TagsList"]
    # A keyword that is the leaf of one of our paths goes in as the path only, as digiKam itself writes it.
    assert got == [*USER, "shoe", "Category/鞋", "Color/red", "Style/sporty"]


def test_no_tagslist_is_added_to_a_sidecar_without_one(tmp_path, store):
    img = photo(tmp_path)
    shutil.copyfile(DATA / "darktable.jpg.xmp", tmp_path / "photo.jpg.xmp")
    write_xmp([row(img, KEYWORDS)], context(store))
    assert "XMP-digiKam:TagsList" not in tags(tmp_path / "photo.jpg.xmp")
    other = photo(tmp_path, "new.jpg")
    write_xmp([row(other, KEYWORDS)], context(store))
    assert "XMP-digiKam:TagsList" not in tags(tmp_path / "new.jpg.xmp")
