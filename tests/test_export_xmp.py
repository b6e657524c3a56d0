"""XMP sidecars (`--format xmp`): read back with exiftool, merged into darktable/Lightroom/digiKam sidecars
without losing their data, stable across re-exports, safe against hostile model output."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from lxml import etree

from imagegen import make_images, run_cli
from imgtag.export.xmp_map import PROPERTIES, mapping_for, skipped_fields
from imgtag.export.xmp_sidecar import write_xmp
from imgtag.presets import builtin_names, load_preset
from imgtag.store import Store
from xmphelp import DATA, as_list, context, exiftool, photo, row, sha, tags

KEYWORDS = {"title": "西湖日落", "description": "游船在西湖上，夕阳西下。",
            "keywords": ["西湖", "sunset", "boat", "杭州", "water"]}


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "out") as s:
        yield s


def test_sidecar_read_by_exiftool_with_chinese_and_lang(tmp_path, store):
    img = photo(tmp_path / "in")
    written = write_xmp([row(img, KEYWORDS)], context(store, lang="zh-Hans"))
    sidecar = tmp_path / "in" / "photo.jpg.xmp"
    assert written == [sidecar]
    got = tags(sidecar)
    assert got["XMP-dc:Subject"] == KEYWORDS["keywords"]
    assert got["XMP-dc:Title"] == "西湖日落"
    assert "XMP-dc:Title-zh-hans" not in got  # one language: one x-default entry (tests/test_xmp_text.py)
    assert got["XMP-dc:Description"] == KEYWORDS["description"]
    etree.fromstring(sidecar.read_bytes())  # well-formed


def test_each_builtin_preset_maps_its_fields(tmp_path, store):
    for name in builtin_names():
        fields = load_preset(name).fields
        mapped = mapping_for(name)
        # every field is written somewhere or left out on purpose, and only to standard properties
        assert set(fields) == set(mapped) | set(skipped_fields(name)), name
        assert all(t.to in PROPERTIES for targets in mapped.values() for t in targets)

    samples = {
        "ecommerce": ({"tags": ["连衣裙", "碎花"], "category": "Dresses", "description": "夏季碎花连衣裙",
                       "color": "red", "style": "boho"},
                      {"XMP-lr:HierarchicalSubject": ["Category|Dresses", "Color|red", "Style|boho", "连衣裙", "碎花"],
                       "XMP-dc:Description": "夏季碎花连衣裙", "XMP-dc:Title": "夏季碎花连衣裙"}),
        "alt-text": ({"alt": "A red tram on a steep street", "title": "Tram 28",
                      "long_description": "A red tram climbs a cobbled street."},
                     {"XMP-iptcCore:AltTextAccessibility": "A red tram on a steep street",
                      "XMP-iptcCore:ExtDescrAccessibility": "A red tram climbs a cobbled street.",
                      "XMP-dc:Title": "Tram 28", "XMP-dc:Description": "A red tram climbs a cobbled street."}),
        "caption": ({"short_caption": "A dog runs on a beach.", "detailed_caption": "Photograph of a dog.",
                     "tags": ["dog", "beach"]},
                    {"XMP-dc:Title": "A dog runs on a beach.", "XMP-dc:Description": "Photograph of a dog.",
                     "XMP-dc:Subject": ["dog", "beach"]}),
        "ocr": ({"text": "出口\nEXIT", "language": "zh", "has_text": True},
                {"XMP-dc:Description": "出口\nEXIT", "XMP-dc:Language": ["zh"]}),
    }
    for preset, (fields, expected) in samples.items():
        img = photo(tmp_path / preset)
        write_xmp([row(img, fields, preset=preset)], context(store))
        got = tags(tmp_path / preset / "photo.jpg.xmp")
        for key, value in expected.items():
            assert got[key] == value, (preset, key)
    # the category leaf is also a flat keyword (what Lightroom and digiKam search)
    assert "Dresses" in tags(tmp_path / "ecommerce" / "photo.jpg.xmp")["XMP-dc:Subject"]


def test_original_untouched_and_reexport_byte_identical(tmp_path, store):
    img = photo(tmp_path / "in")
    before, mtime = sha(img), os.stat(img).st_mtime_ns
    ctx = context(store)
    write_xmp([row(img, KEYWORDS)], ctx)
    sidecar = tmp_path / "in" / "photo.jpg.xmp"
    first = sidecar.read_bytes()
    write_xmp([row(img, KEYWORDS)], ctx)
    write_xmp([row(img, KEYWORDS)], ctx)
    assert sidecar.read_bytes() == first
    assert sha(img) == before and os.stat(img).st_mtime_ns == mtime
    assert tags(sidecar)["XMP-dc:Subject"] == KEYWORDS["keywords"]


@pytest.mark.parametrize("fixture, image, sidecar_name", [
    ("darktable.jpg.xmp", "DSC_0042.jpg", "DSC_0042.jpg.xmp"),
    ("lightroom.xmp", "DSCF1234.jpg", "DSCF1234.xmp"),
    ("digikam.jpg.xmp", "IMG_2023.jpg", "IMG_2023.jpg.xmp"),
])
def test_existing_sidecars_keep_everything_not_ours(tmp_path, store, fixture, image, sidecar_name):
    img = photo(tmp_path / "in", image)
    sidecar = tmp_path / "in" / sidecar_name
    shutil.copyfile(DATA / fixture, sidecar)
    before = tags(sidecar)
    ctx = context(store, lang="zh")
    write_xmp([row(img, KEYWORDS)], ctx)
    after = tags(sidecar)
    # digiKam reads its own TagsList first, so our tags go there too when it exists (tests/test_xmp_digikam.py)
    ours = {"XMP-dc:Subject", "XMP-dc:Title", "XMP-dc:Description", "XMP-digiKam:TagsList",
            "XMP-lr:HierarchicalSubject"} | {k for k in after if k.startswith(("XMP-dc:Title-", "XMP-dc:Description-"))}
    for key, value in before.items():
        if key not in ours:
            assert after.get(key) == value, key  # ratings, labels, history, crs:, creator...
    # every keyword is in the hierarchy too (what darktable reads: tests/test_xmp_darktable.py), after the user's
    user_paths = as_list(before.get("XMP-lr:HierarchicalSubject"))
    assert after["XMP-lr:HierarchicalSubject"][:len(user_paths)] == user_paths
    if "XMP-digiKam:TagsList" in before:
        assert after["XMP-digiKam:TagsList"] == before["XMP-digiKam:TagsList"] + KEYWORDS["keywords"]
    # the user's keywords stay, ours are added once (darktable's user already has "sunset")
    user = as_list(before.get("XMP-dc:Subject"))
    assert after["XMP-dc:Subject"] == user + [k for k in KEYWORDS["keywords"] if k not in user]
    # the user's own title stays (Lightroom's "Old title"); where there was none, ours is written
    assert after["XMP-dc:Title"] == before.get("XMP-dc:Title", "西湖日落")

    # a second export with different answers replaces our keywords, never the user's
    first = sidecar.read_bytes()
    write_xmp([row(img, KEYWORDS)], ctx)
    assert sidecar.read_bytes() == first
    changed = dict(KEYWORDS, keywords=["harbour", "西湖"])
    write_xmp([row(img, changed)], ctx)
    again = tags(sidecar)
    assert again["XMP-dc:Subject"] == [*user, "harbour", "西湖"]
    for key, value in before.items():
        if key not in ours:
            assert again.get(key) == value, key


def test_fixture_specifics_survive(tmp_path, store):
    """The things users would miss first, spelled out."""
    cases = [("darktable.jpg.xmp", "a.jpg", "a.jpg.xmp"), ("lightroom.xmp", "b.jpg", "b.xmp"),
             ("digikam.jpg.xmp", "c.jpg", "c.jpg.xmp")]
    for fixture, image, name in cases:
        shutil.copyfile(DATA / fixture, tmp_path / name)
        write_xmp([row(photo(tmp_path, image), KEYWORDS)], context(store))
    dt = tags(tmp_path / "a.jpg.xmp")
    assert dt["XMP-xmp:Rating"] == 4
    assert [h["Operation"] for h in dt["XMP-darktable:History"]] == ["colorin", "exposure", "filmicrgb"]
    assert "darktable|format|jpg" in dt["XMP-lr:HierarchicalSubject"]
    lr = tags(tmp_path / "b.xmp")
    assert lr["XMP-xmp:Rating"] == 5 and lr["XMP-xmp:Label"] == "Red"
    assert lr["XMP-crs:Exposure2012"] == "+0.35" and lr["XMP-crs:CameraProfile"] == "Classic Chrome"
    assert lr["XMP-dc:Creator"] == ["Ana Lima"]
    assert lr["XMP-dc:Title-pt"] == "Título antigo"  # other languages of an alternative stay
    dk = tags(tmp_path / "c.jpg.xmp")
    assert dk["XMP-digiKam:TagsList"] == ["People/Grandma", "Events/Birthday 2023", *KEYWORDS["keywords"]]
    assert dk["XMP-xmp:Rating"] == 3 and dk["XMP-digiKam:ColorLabel"] == 2


def test_user_keyword_equal_to_ours_is_not_duplicated_nor_taken(tmp_path, store):
    img = photo(tmp_path)
    shutil.copyfile(DATA / "darktable.jpg.xmp", tmp_path / "photo.jpg.xmp")
    ctx = context(store)
    write_xmp([row(img, dict(KEYWORDS, keywords=["Sunset", "boat"]))], ctx)
    assert tags(tmp_path / "photo.jpg.xmp")["XMP-dc:Subject"] == ["sunset", "家人", "boat"]
    # "sunset" was the user's before imgtag came: removing our keywords must keep it
    write_xmp([row(img, dict(KEYWORDS, keywords=["tree"]))], ctx)
    assert tags(tmp_path / "photo.jpg.xmp")["XMP-dc:Subject"] == ["sunset", "家人", "tree"]


def test_naming_stem_and_collisions(tmp_path, store):
    a_jpg, a_png, solo = photo(tmp_path, "a.jpg"), photo(tmp_path, "a.png"), photo(tmp_path, "solo.jpg")
    # captions and JSON sidecars share a stem by design: not a collision
    (tmp_path / "solo.txt").write_text("caption", encoding="utf-8")
    ctx = context(store, xmp_name="stem")
    written = write_xmp([row(a_jpg, KEYWORDS), row(a_png, KEYWORDS), row(solo, KEYWORDS)], ctx)
    assert sorted(p.name for p in written) == ["a.jpg.xmp", "a.png.xmp", "solo.xmp"]
    assert not (tmp_path / "a.xmp").exists()
    assert any("a.jpg" in n and "a.png" in n and "photo.jpg.xmp" in n for n in ctx.notes), ctx.notes


def test_existing_stem_sidecar_is_merged_in_default_mode_unless_shared(tmp_path, store):
    img = photo(tmp_path, "DSCF1234.jpg")
    shutil.copyfile(DATA / "lightroom.xmp", tmp_path / "DSCF1234.xmp")
    assert write_xmp([row(img, KEYWORDS)], context(store)) == [tmp_path / "DSCF1234.xmp"]
    assert not (tmp_path / "DSCF1234.jpg.xmp").exists()
    # with a second image of that stem, b.xmp belongs to neither: left alone, full names used
    b_jpg, b_png = photo(tmp_path, "b.jpg"), photo(tmp_path, "b.png")
    shutil.copyfile(DATA / "lightroom.xmp", tmp_path / "b.xmp")
    before = sha(tmp_path / "b.xmp")
    written = write_xmp([row(b_jpg, KEYWORDS), row(b_png, KEYWORDS)], context(store))
    assert [p.name for p in written] == ["b.jpg.xmp", "b.png.xmp"]
    assert sha(tmp_path / "b.xmp") == before
    # --xmp-name stem with an existing full-name sidecar: merge into it rather than start a second one
    c = photo(tmp_path, "c.jpg")
    shutil.copyfile(DATA / "digikam.jpg.xmp", tmp_path / "c.jpg.xmp")
    assert write_xmp([row(c, KEYWORDS)], context(store, xmp_name="stem")) == [tmp_path / "c.jpg.xmp"]


HOSTILE = {
    "title": "=1+2 <script>alert('x')</script>",
    "description": "]]> </rdf:li></rdf:Alt> \"quoted\" & 'single' \x00\x07\x1b[31m red\u2028end \ud800",
    "keywords": ["=HYPERLINK(\"http://evil\")", "<b>bold</b>", "]]>", "a\nb\tc", "\x0c", "&amp;", "x" * 500],
}


def test_hostile_model_output_is_inert(tmp_path, store):
    img = photo(tmp_path)
    shutil.copyfile(DATA / "lightroom.xmp", tmp_path / "photo.xmp")
    write_xmp([row(img, HOSTILE)], context(store, lang="en", xmp_overwrite_text=True))  # over "Old title"
    data = (tmp_path / "photo.xmp").read_bytes()
    root = etree.fromstring(data)  # still one valid XML document
    assert b"<script>" not in data and b"<b>" not in data
    got = tags(tmp_path / "photo.xmp")
    assert got["XMP-dc:Title"] == HOSTILE["title"]
    assert got["XMP-dc:Description"].startswith("]]> </rdf:li></rdf:Alt> \"quoted\" & 'single'")
    assert "\x00" not in got["XMP-dc:Description"] and "\x1b" not in got["XMP-dc:Description"]
    assert got["XMP-dc:Subject"][2:] == ["=HYPERLINK(\"http://evil\")", "<b>bold</b>", "]]>", "a b c", "&amp;",
                                         "x" * 500]
    assert got["XMP-crs:Exposure2012"] == "+0.35"
    assert len(root.findall(".//{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description")) == 2


def test_unusable_existing_sidecar_is_left_alone_and_recorded(tmp_path, store):
    img = photo(tmp_path, "x.jpg")
    bomb = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            b"<rdf:Description rdf:about=\"\">&b;</rdf:Description></rdf:RDF></x:xmpmeta>")
    (tmp_path / "x.jpg.xmp").write_bytes(bomb)
    broken = photo(tmp_path, "y.jpg")
    (tmp_path / "y.jpg.xmp").write_bytes(b"<x:xmpmeta><rdf:RDF>")
    ok = photo(tmp_path, "z.jpg")
    ctx = context(store)
    written = write_xmp([row(img, KEYWORDS), row(broken, KEYWORDS), row(ok, KEYWORDS)], ctx)
    assert written == [tmp_path / "z.jpg.xmp"]
    assert (tmp_path / "x.jpg.xmp").read_bytes() == bomb
    assert (tmp_path / "y.jpg.xmp").read_bytes() == b"<x:xmpmeta><rdf:RDF>"
    failures = dict(ctx.xmp_ledger.failures("sidecar"))
    assert "DTD" in failures[str(tmp_path / "x.jpg.xmp")]
    assert "not valid XML" in failures[str(tmp_path / "y.jpg.xmp")]
    assert any("2 sidecar(s) not written" in n for n in ctx.notes), ctx.notes


def test_cli_run_writes_sidecars_exiftool_reads(tmp_path, fake_anthropic_factory, monkeypatch):
    made = make_images(tmp_path / "in", 3)
    originals = {name: sha(tmp_path / "in" / name) for name in made}
    fake = fake_anthropic_factory()
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q", "--format", "csv,xmp",
                            "--xmp-name", "stem"], fake.env(), monkeypatch)
    assert code == 0, output
    for name in made:
        sidecar = tmp_path / "in" / (name.rsplit(".", 1)[0] + ".xmp")
        got = tags(sidecar)
        assert len(got["XMP-dc:Subject"]) >= 3 and got["XMP-dc:Description"] and got["XMP-dc:Title"], got
        assert any(h.startswith("Category|") for h in got["XMP-lr:HierarchicalSubject"])
        assert sha(tmp_path / "in" / name) == originals[name]
    first = {p.name: p.read_bytes() for p in (tmp_path / "in").glob("*.xmp")}
    # export later without flags: the run's naming is remembered, files are byte-identical
    code, output = run_cli(["export", "--out", str(out)], {}, monkeypatch)
    assert code == 0, output
    assert {p.name: p.read_bytes() for p in (tmp_path / "in").glob("*.xmp")} == first
    code, output = run_cli(["export", "--out", str(out), "--xmp-name", "sideways", "--format", "xmp"], {},
                           monkeypatch)
    assert code == 2 and "--xmp-name" in output and "Traceback" not in output


def test_exiftool_reads_every_keyword_of_many_sidecars(tmp_path, store):
    """One exiftool call over a folder, as a user would run it."""
    images = [photo(tmp_path, f"p{i}.jpg") for i in range(5)]
    write_xmp([row(p, dict(KEYWORDS, keywords=[f"k{i}", "共同"])) for i, p in enumerate(images)], context(store))
    for entry in exiftool("-XMP-dc:Subject", "-ext", "xmp", tmp_path):
        i = int(os.path.basename(entry["SourceFile"])[1])
        assert entry["XMP-dc:Subject"] == [f"k{i}", "共同"]


def test_exiv2_reads_merged_sidecars(tmp_path, store):
    """darktable and digiKam read sidecars through libexiv2, not exiftool: check with its own CLI."""
    exe = shutil.which("exiv2")
    assert exe, "exiv2 is needed to check sidecars the way darktable and digiKam read them (.ci/system-deps)"
    for fixture, image in (("darktable.jpg.xmp", "d.jpg"), ("digikam.jpg.xmp", "k.jpg")):
        shutil.copyfile(DATA / fixture, tmp_path / f"{image}.xmp")
        write_xmp([row(photo(tmp_path, image), KEYWORDS)], context(store, lang="zh"))

    def exiv2(path):
        done = subprocess.run([exe, "-px", str(path)], capture_output=True, check=False)
        return done.stdout.decode("utf-8"), done.stderr.decode("utf-8")
    out, err = exiv2(tmp_path / "d.jpg.xmp")
    assert "Error" not in err, err
    assert any(line.startswith("Xmp.darktable.history[3]/darktable:operation") and line.endswith("filmicrgb")
               for line in out.splitlines()), out
    assert "sunset, 家人, 西湖, boat, 杭州, water" in out
    assert 'lang="x-default" 西湖日落\n' in out and 'lang="zh"' not in out  # one language, one entry
    out, err = exiv2(tmp_path / "k.jpg.xmp")
    assert "Error" not in err, err
    assert "Xmp.digiKam.TagsList" in out and "People/Grandma, Events/Birthday 2023" in out
    assert "Grandma, Birthday 2023, 西湖, sunset, boat, 杭州, water" in out


def test_the_results_files_are_named_apart_from_the_sidecars(tmp_path, fake_anthropic_factory, monkeypatch):
    """`export --format xmp,csv` on 33 images said 'wrote /photos/PETS.JPEG.xmp, ... and 23 more (paths relative to
    /photos)': results.csv was lost among 'and 23 more', and the note about its paths followed absolute sidecar
    paths it does not describe."""
    make_images(tmp_path / "in", 12)
    fake = fake_anthropic_factory()
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    code, output = run_cli(["export", "--out", str(out), "--format", "xmp,csv"], {"COLUMNS": "1000"}, monkeypatch)
    assert code == 0, output
    wrote = [line for line in output.splitlines() if line.startswith("wrote ")]
    results = next(line for line in wrote if "results.csv" in line)
    assert results == f"wrote {out / 'results.csv'} (paths relative to {tmp_path / 'in'})", output
    sidecars = next(line for line in wrote if ".xmp" in line)
    assert "relative" not in sidecars and "and 2 more" in sidecars, output
