"""Embedded metadata (`--format xmp-embed`): exiftool reads it back from JPEG, PNG, TIFF and WebP, pixels and
file mode/mtime are kept, a failure leaves the original byte-identical and is recorded per image."""

from __future__ import annotations

import os
import subprocess

import pytest
from PIL import Image

import imgtag.export.xmp_embed as embed
from imagegen import make_images, read_jsonl, run_cli
from imgtag.export.xmp_embed import write_xmp_embed
from imgtag.store import Store
from xmphelp import context, row, tags

FIELDS = {"title": "西湖日落", "description": "游船在西湖上。\n第二行",
          "keywords": ["西湖", "sunset", "杭州", "=1+2", "<script>"]}


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "out") as s:
        yield s


def _image(folder, name):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    img = Image.new("RGB", (80, 60), (20, 140, 90))
    img.putpixel((3, 4), (255, 0, 0))
    img.save(path, **({"lossless": True} if name.endswith(".webp") else {}))
    os.chmod(path, 0o640)
    os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    return path


def _pixels(path):
    with Image.open(path) as im:
        return im.convert("RGB").tobytes()


@pytest.mark.parametrize("name, iptc", [("a.jpg", True), ("b.png", False), ("c.tif", True), ("d.webp", False)])
def test_embedded_metadata_read_back_by_exiftool(tmp_path, store, name, iptc):
    img = _image(tmp_path / "in", name)
    pixels, st = _pixels(img), os.stat(img)
    ctx = context(store, lang="zh")
    assert write_xmp_embed([row(img, FIELDS)], ctx) == [img]
    got = tags(img)
    assert got["XMP-dc:Subject"] == FIELDS["keywords"]
    assert got["XMP-dc:Title"] == "西湖日落" and "XMP-dc:Title-zh" not in got  # one language: one entry
    assert got["XMP-dc:Description"] == FIELDS["description"]
    if iptc:
        assert got["IPTC:Keywords"] == FIELDS["keywords"]
        assert got["IPTC:Caption-Abstract"] == FIELDS["description"]
        assert got["IPTC:CodedCharacterSet"] == "UTF8"
    assert _pixels(img) == pixels  # never re-encoded
    now = os.stat(img)
    assert (now.st_mode, now.st_mtime_ns) == (st.st_mode, st.st_mtime_ns)
    assert not [p for p in img.parent.iterdir() if p.name.startswith(".")]  # no temp file left

    # again: nothing to change, the file stays byte-identical; changed answers replace ours only
    data = img.read_bytes()
    write_xmp_embed([row(img, FIELDS)], ctx)
    assert img.read_bytes() == data
    write_xmp_embed([row(img, dict(FIELDS, keywords=["lake", "西湖"]))], ctx)
    got = tags(img)
    assert got["XMP-dc:Subject"] == ["lake", "西湖"]
    if iptc:
        assert got["IPTC:Keywords"] == ["lake", "西湖"]


def test_users_own_embedded_keywords_and_rating_stay(tmp_path, store):
    img = _image(tmp_path, "mine.jpg")
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-XMP-xmp:Rating=4", "-XMP-dc:Subject=family",
                    "-IPTC:Keywords=family", "-IPTC:By-line=Ana", "-XMP-dc:Creator=Ana", str(img)], check=True)
    ctx = context(store)
    write_xmp_embed([row(img, FIELDS)], ctx)
    write_xmp_embed([row(img, FIELDS)], ctx)
    got = tags(img)
    assert got["XMP-xmp:Rating"] == 4 and got["XMP-dc:Creator"] == ["Ana"] and got["IPTC:By-line"] == "Ana"
    assert got["XMP-dc:Subject"] == ["family", *FIELDS["keywords"]]
    assert got["IPTC:Keywords"] == ["family", *FIELDS["keywords"]]


def test_failures_leave_originals_byte_identical_and_are_recorded(tmp_path, store, monkeypatch):
    gif = tmp_path / "anim.gif"
    Image.new("RGB", (40, 40), (1, 2, 3)).save(gif)
    changed = _image(tmp_path, "changed.jpg")
    bad = _image(tmp_path, "bad.jpg")
    good = _image(tmp_path, "good.jpg")
    # the store knows changed.jpg with another size: it was edited after tagging
    store.db.execute("INSERT INTO files(path, display, status, size, mtime_ns) VALUES (?, 'changed.jpg', 'ok', 1, 1)",
                     (os.fsencode(str(changed)),))
    before = {p: p.read_bytes() for p in (gif, changed, bad, good)}

    real_verify = embed._verify

    def failing_verify(et, tmp, source, *args):
        if source.endswith("bad.jpg"):
            raise embed.EmbedError("read-back check failed: simulated")
        return real_verify(et, tmp, source, *args)

    monkeypatch.setattr(embed, "_verify", failing_verify)
    ctx = context(store)
    written = write_xmp_embed([row(p, FIELDS) for p in (gif, changed, bad, good)], ctx)
    assert written == [good]
    for p in (gif, changed, bad):
        assert p.read_bytes() == before[p], p.name
    assert good.read_bytes() != before[good]
    failures = dict(ctx.xmp_ledger.failures("embedded"))
    assert set(failures) == {str(gif), str(changed), str(bad)}
    assert "JPEG, PNG, TIFF or WebP" in failures[str(gif)]
    assert "changed since it was tagged" in failures[str(changed)]
    assert "simulated" in failures[str(bad)]
    assert any("3 image(s) left unchanged" in n for n in ctx.notes), ctx.notes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anim.gif", "bad.jpg", "changed.jpg", "good.jpg", "out"]


def test_cli_embed_then_rerun_pays_nothing_again(tmp_path, fake_anthropic_factory, monkeypatch):
    make_images(tmp_path / "in", 3)
    fake = fake_anthropic_factory()
    out = tmp_path / "o"
    args = ["run", str(tmp_path / "in"), "--out", str(out), "-q", "--format", "jsonl,xmp-embed"]
    code, output = run_cli(args, fake.env(), monkeypatch)
    assert code == 0, output
    for p in (tmp_path / "in").iterdir():
        assert len(tags(p)["IPTC:Keywords"]) >= 3
    asked = fake.stats.messages_requests
    assert asked == 3
    first = read_jsonl(out / "results.jsonl")
    # the files' bytes changed (not their pixels): a second run must not ask the model again
    code, output = run_cli(args, fake.env(), monkeypatch)
    assert code == 0, output
    assert "0 requests" in output
    assert [r["fields"] for r in read_jsonl(out / "results.jsonl")] == [r["fields"] for r in first]
    assert fake.stats.messages_requests == asked


def test_missing_exiftool_is_a_usage_error(tmp_path, monkeypatch):
    make_images(tmp_path / "in", 1)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--format", "xmp-embed"],
                           {"ANTHROPIC_API_KEY": "sk-ant-test-key"}, monkeypatch)
    assert code == 2
    assert "exiftool" in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "imgtag.db").exists()  # checked before anything ran


def _with_broken_xmp(path):
    """A JPEG whose embedded XMP packet is not XML (as some broken writers leave it): imgtag refuses to merge."""
    data = path.read_bytes()
    payload = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta><rdf:RDF>"
    path.write_bytes(data[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + data[2:])


def test_cli_exits_1_naming_the_files_not_written(tmp_path, fake_anthropic_factory, monkeypatch):
    """README: exit 1 when something was not done. An image left unchanged by xmp-embed, or a sidecar xmp could
    not write, is named, and the run and a later export exit 1 (the results themselves are saved)."""
    folder = tmp_path / "in"
    make_images(folder, 3)
    _with_broken_xmp(folder / "img_0001.jpg")
    (folder / "img_0002.jpg.xmp").write_bytes(b"<x:xmpmeta><rdf:RDF>")  # a broken sidecar: left alone
    fake = fake_anthropic_factory()
    out = tmp_path / "o"
    code, output = run_cli(["run", str(folder), "--out", str(out), "-q", "--format", "jsonl,xmp,xmp-embed"],
                           fake.env(), monkeypatch)
    assert code == 1, output
    [line] = [x for x in output.splitlines() if x.startswith("imgtag: 2 files not written")]
    assert "img_0001.jpg" in line and "img_0002.jpg.xmp" in line, output
    assert "Traceback" not in output
    assert all(r["status"] == "ok" for r in read_jsonl(out / "results.jsonl"))
    code, output = run_cli(["export", "--out", str(out)], {}, monkeypatch)
    assert code == 1 and "2 files not written" in output, output
    # fixed by the user: the next export writes them and exits 0
    (folder / "img_0002.jpg.xmp").unlink()
    code, output = run_cli(["export", "--out", str(out), "--format", "xmp"], {}, monkeypatch)
    assert code == 0 and "not written" not in output, output


def test_an_embedded_packet_ending_in_a_nul_byte_is_merged_into(tmp_path, store):
    """Some writers end the XMP packet with a NUL byte (darknet's sample photos, cnocr's demo image: both in the
    corpus). exiftool reads it as XMP; imgtag refused it as 'not valid XML (Extra content at the end of the
    document)' and left the image without its tags."""
    import shutil
    from pathlib import Path

    src = Path(__file__).parent / "corpus" / "photos" / "darknet_dog.jpg"
    img = tmp_path / "dog.jpg"
    shutil.copyfile(src, img)
    assert subprocess.run(["exiftool", "-xmp", "-b", str(img)], capture_output=True, check=True).stdout.endswith(b"\0")
    assert write_xmp_embed([row(img, FIELDS)], context(store)) == [img]
    assert tags(img)["XMP-dc:Subject"] == FIELDS["keywords"]


def test_every_reason_an_image_was_left_unchanged_is_shown(tmp_path, store):
    """The summary names every file not written and says 'why: see above', so the note above gives each file's
    reason: grouped by reason, not the first three files' reasons and '…' (a fourth file's reason was nowhere)."""
    gifs = []
    for i in range(4):
        gifs.append(tmp_path / f"anim{i}.gif")
        Image.new("RGB", (40, 40), (1, 2, 3)).save(gifs[-1])
    broken = _image(tmp_path, "broken.jpg")
    _with_broken_xmp(broken)
    ctx = context(store)
    assert write_xmp_embed([row(p, FIELDS) for p in (*gifs, broken)], ctx) == []
    note = next(n for n in ctx.notes if "left unchanged" in n)
    assert note.startswith("xmp-embed: 5 image(s) left unchanged: "), note
    assert note.count("JPEG, PNG, TIFF or WebP") == 1, note  # one reason, said once
    assert "broken.jpg: existing XMP is not valid XML" in note or "not valid XML" in note.split("broken.jpg")[0], note
    assert "…" not in note and "anim0.gif" in note and "broken.jpg" in note, note


def test_a_refusal_by_exiftool_names_the_image_not_its_temporary_copy(tmp_path, store, monkeypatch):
    """exiftool writes into a hidden copy beside the image and ends its error with that copy's path (as it does
    for pillow's hopper_bad_exif.jpg: 'Error: Truncated IFD0 directory - /photos/.hopper.jpg.67da612e.imgtag-tmp.jpg');
    the reason a person reads is about their image, with no path they never made."""
    img = _image(tmp_path / "in", "hopper.jpg")
    real_execute = embed.Exiftool.execute

    def refusing(self, args):
        if any(isinstance(a, str) and a.startswith("-XMP<=") for a in args):
            return b"    0 image files updated\n", f"Error: Truncated IFD0 directory - {args[-1]}\n"
        return real_execute(self, args)

    monkeypatch.setattr(embed.Exiftool, "execute", refusing)
    ctx = context(store)
    assert write_xmp_embed([row(img, FIELDS)], ctx) == []
    reason = dict(ctx.xmp_ledger.failures("embedded"))[str(img)]
    assert reason == "exiftool refused to write JPEG: Truncated IFD0 directory", reason
