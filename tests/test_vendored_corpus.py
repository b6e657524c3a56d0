"""Every preprocessing rule, on the small corpus vendored in tests/corpus (always present, even in a fresh
clone) plus cases generated here. The full corpus beside the checkout adds breadth; this file is the floor."""

from __future__ import annotations

import hashlib
import io
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import VENDORED_CORPUS
from imgtag.ingest.prefilter import hamming
from imgtag.ingest.preprocess import ImageReport, PrepareRequest, prepare, prepare_many

EDGE = VENDORED_CORPUS / "edge"
PHOTOS = VENDORED_CORPUS / "photos"


def run(path: Path, **kw: object) -> ImageReport:
    return prepare(PrepareRequest(str(path), **kw))  # type: ignore[arg-type]


def pixels(rep: ImageReport) -> np.ndarray:
    assert rep.encoded is not None, rep.reason
    return np.asarray(Image.open(io.BytesIO(rep.encoded)).convert("RGB"), dtype=np.int16)


def test_vendored_subset_is_small_and_documented() -> None:
    files = [p for p in VENDORED_CORPUS.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 8 * 1024 * 1024
    readme = (VENDORED_CORPUS / "README.md").read_text(encoding="utf-8")
    manifest = (VENDORED_CORPUS / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()
    listed = {line.split("\t")[0] for line in manifest[1:]}
    images = {str(p.relative_to(VENDORED_CORPUS)) for p in files} - {"README.md", "MANIFEST.tsv"}
    assert images == listed  # every vendored file has its source, commit and licence
    assert all(line.split("\t")[4] for line in manifest[1:])
    assert "MANIFEST.tsv" in readme


@pytest.mark.parametrize(("name", "fmt"), [
    ("photos/coral_owl.jpg", "JPEG"), ("photos/skimage_coffee.png", "PNG"),
    ("photos/pillow_flower2.webp", "WEBP"), ("edge/pillow_iss634.gif", "GIF"), ("edge/pillow_bmp_rgba32.bmp", "BMP"),
    ("edge/pillow_hopper_bigtiff.tif", "TIFF"), ("edge/libheif_example.heic", "HEIF"),
    ("edge/libheif_example.avif", "AVIF"), ("edge/libvips_world.jp2", "JPEG2000"),
    ("edge/pillow_frozenpond.mpo", "MPO"),
])
def test_formats_decode(name: str, fmt: str) -> None:
    rep = run(VENDORED_CORPUS / name, min_short_side=0)
    assert (rep.status, rep.format) == ("ok", fmt), rep.reason


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_generated_from_an_upright_photo(tmp_path: Path, orientation: int) -> None:
    with Image.open(PHOTOS / "recurser_Landscape_1.jpg") as im:
        upright = im.convert("RGB").reduce(4)  # 450x300
    # Store the pixels as a camera would for this orientation, and say so in EXIF: the inverse transposition.
    inverse = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
               4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
               7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}[orientation]
    stored = upright if inverse is None else upright.transpose(inverse)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    stored.save(path, quality=95, exif=exif)
    rep = run(path, min_short_side=0)
    assert (rep.status, rep.width, rep.height) == ("ok", 450, 300), rep.reason
    upright.save(tmp_path / "upright.jpg", quality=95)
    ref = run(tmp_path / "upright.jpg", min_short_side=0)
    assert rep.phash and ref.phash and hamming(rep.phash, ref.phash) <= 4
    assert np.abs(pixels(rep) - pixels(ref)).mean() < 6


def test_exif_and_container_orientation_in_the_wild() -> None:
    rot6 = run(EDGE / "libvips_rotation_6_progressive.jpg", min_short_side=0)
    assert (rot6.status, rot6.width, rot6.height) == ("ok", 231, 308)
    webp5 = run(EDGE / "pillow_hopper_orientation_5.webp", min_short_side=0)
    assert webp5.status == "ok"


def test_cmyk_16bit_and_alpha_become_srgb_on_white() -> None:
    cmyk = run(EDGE / "pillow_tiff_tiled_cmyk_jpeg.tif", min_short_side=0)
    assert cmyk.status == "ok", cmyk.reason
    for name in ("pillow_tiff_16bit_RGBa.tiff", "pillow_i_trns.png", "pillow_apng_mode_16bit.png"):
        assert run(EDGE / name, min_short_side=0).status == "ok", name
    alpha = run(EDGE / "pillow_transparent.png", min_short_side=0)
    with Image.open(EDGE / "pillow_transparent.png") as im:
        rgba = np.asarray(im.convert("RGBA"))
        ys, xs = np.nonzero(rgba[:, :, 3] == 0)
        w, h = im.size
    assert len(xs), "the vendored alpha file has transparent pixels"
    out = pixels(alpha)
    y = int(ys[0] * out.shape[0] / h)
    x = int(xs[0] * out.shape[1] / w)
    assert (out[y, x] > 235).all()  # transparent became white, not black


def test_animation_uses_the_first_frame() -> None:
    for name in ("pillow_iss634.gif", "pillow_iss634.webp", "pillow_avif_star.avifs"):
        rep = run(EDGE / name, min_short_side=0)
        assert rep.status == "ok", (name, rep.reason)


@pytest.mark.parametrize(("name", "status", "code"), [
    ("skimage_truncated.jpg", "failed", "truncated"),
    ("pillow_truncated_image.png", "failed", "truncated"),
    ("pillow_broken.png", "failed", "corrupt"),
    ("pillow_heif_corrupted.heic", "failed", "corrupt"),
    ("zero_bytes.jpg", "skipped", "empty"),
    ("text_file_not_image.jpg", "skipped", "not_image"),
    ("pillow_decompression_bomb.ico", "failed", "bomb"),
    ("pillow_decompression_bomb_extents.gif", "failed", "bomb"),
    ("pillow_png_decompression_dos.png", "failed", "bomb"),
    ("libvips_17000x17000.avif", "failed", "bomb"),
    ("libjpeg-turbo_monkey12.jpg", "failed", "unsupported"),
    ("exifpy_Sony_alpha_a58.JPG", "skipped", "too_small"),
])
def test_bad_input_gets_one_line_reason(name: str, status: str, code: str) -> None:
    rep = run(EDGE / name)
    assert (rep.status, rep.reason_code) == (status, code), rep.reason
    assert rep.reason and "\n" not in rep.reason


def test_generated_bomb_and_truncation(tmp_path: Path) -> None:
    # A tiny PNG whose header declares 40000x40000 (1,600 MP): refused from the header, never decoded.
    data = io.BytesIO()
    Image.new("L", (1, 1)).save(data, format="PNG")
    raw = bytearray(data.getvalue())
    raw[16:24] = (40000).to_bytes(4, "big") * 2
    raw[29:33] = zlib.crc32(bytes(raw[12:29])).to_bytes(4, "big")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bytes(raw))
    assert run(bomb).reason_code == "bomb"
    whole = (PHOTOS / "coral_owl.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole[: len(whole) // 2])
    assert run(cut).reason_code == "truncated"


def test_duplicates_exact_and_near(tmp_path: Path) -> None:
    # A near-duplicate: the same photo, smaller and saved as PNG (different bytes, same picture).
    with Image.open(PHOTOS / "intel_bicycle.jpg") as im:
        im.resize((im.width * 9 // 10, im.height * 9 // 10)).save(tmp_path / "intel_bicycle.png")
    files = [PHOTOS / "coral_pets.jpg", EDGE / "PETS.JPEG", PHOTOS / "intel_bicycle.jpg",
             tmp_path / "intel_bicycle.png"]
    reports = {Path(r.path).name: r for r in prepare_many([PrepareRequest(str(p)) for p in files], workers=2)}
    assert reports["coral_pets.jpg"].sha256 == reports["PETS.JPEG"].sha256 == hashlib.sha256(
        files[0].read_bytes()).hexdigest()
    jpg, png = reports["intel_bicycle.jpg"], reports["intel_bicycle.png"]
    assert jpg.sha256 != png.sha256 and jpg.phash and png.phash and hamming(jpg.phash, png.phash) <= 6
