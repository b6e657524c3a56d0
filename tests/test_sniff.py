"""Format identification by content, on the real corpus files (extensions deliberately ignored)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from conftest import CORPUS, EDGE, PHOTOS, needs_full_corpus
from imgtag.ingest.sniff import (
    IMAGE_FORMATS,
    SNIFF_BYTES,
    bmp_compression,
    classify_unknown,
    declared_size,
    jpeg_frame,
    sniff_format,
)


def head(path: Path, n: int = SNIFF_BYTES) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


EXPECTED = {
    "PETS.JPEG": "JPEG",
    "exifsamples_IMG_5195.HEIC": "HEIF",
    "intel_bicycle.bmp": "BMP",
    "libheif_example.avif": "AVIF",
    "libheif_example.heic": "HEIF",
    "libjpeg-turbo_monkey12.jpg": "JPEG",  # 12-bit, still JPEG on the wire
    "libvips_17000x17000.avif": "AVIF",
    "libvips_looks-like-svg.webp": "WEBP",
    "libvips_multi-channel-z-series.ome.tif": "TIFF",
    "libvips_world.jp2": "JPEG2000",
    "pillow_apng_mode_16bit.png": "PNG",
    "pillow_avif_star.avifs": "AVIF",
    "pillow_decompression_bomb.ico": "ICO",
    "pillow_frozenpond.mpo": "JPEG",  # MPO is JPEG on the wire
    "pillow_hopper_bigtiff.tif": "TIFF",
    "pillow_heif_cat.hif": "HEIF",
    "pillow_heif_RGBA_12bit_29x100.heif": "HEIF",
    "pillow_iss634.gif": "GIF",
    "pillow_broken.png": "PNG",  # signature intact, rest garbage: the decoder reports it
    "text_file_not_image.jpg": None,
    "zero_bytes.jpg": None,
}


# Too big to vendor (tests/corpus holds the rest): these run only with the full corpus beside the checkout.
FULL_CORPUS_ONLY = {"exifsamples_IMG_5195.HEIC", "intel_bicycle.bmp", "libvips_multi-channel-z-series.ome.tif",
                    "pillow_heif_cat.hif"}


@pytest.mark.parametrize(("name", "fmt"), [
    pytest.param(name, fmt, marks=needs_full_corpus) if name in FULL_CORPUS_ONLY else (name, fmt)
    for name, fmt in sorted(EXPECTED.items())])
def test_sniff_corpus(corpus: Path, name: str, fmt: str | None) -> None:
    assert sniff_format(head(EDGE / name)) == fmt


def test_every_photo_is_recognised(corpus: Path) -> None:
    for path in PHOTOS.iterdir():
        fmt = sniff_format(head(path))
        assert fmt in IMAGE_FORMATS, path.name
        assert fmt == {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}[path.suffix[1:].lower()]


def test_content_not_extension(tmp_path: Path, corpus: Path) -> None:
    # A PNG renamed .jpg and a JPEG with no extension are still what their bytes say.
    png_as_jpg = tmp_path / "really_png.jpg"
    png_as_jpg.write_bytes((PHOTOS / "skimage_coffee.png").read_bytes())
    noext = tmp_path / "noext"
    noext.write_bytes((PHOTOS / "coral_owl.jpg").read_bytes())
    assert sniff_format(head(png_as_jpg)) == "PNG"
    assert sniff_format(head(noext)) == "JPEG"


def test_text_and_junk_are_not_images() -> None:
    assert sniff_format(b"") is None
    assert sniff_format(b"\x00" * 64) is None
    assert sniff_format(b"hello world, this is not an image at all\n") is None
    assert sniff_format(b"BM but only text follows here.....") is None  # "BM" alone is not enough
    assert sniff_format(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom") is None  # MP4 video


def test_heif_family_brands() -> None:
    def ftyp(major: bytes, *compat: bytes) -> bytes:
        body = major + b"\x00\x00\x00\x00" + b"".join(compat)
        return struct.pack(">I", 8 + len(body)) + b"ftyp" + body

    assert sniff_format(ftyp(b"heic", b"mif1", b"heic")) == "HEIF"
    assert sniff_format(ftyp(b"mif1", b"mif1", b"avif")) == "AVIF"
    assert sniff_format(ftyp(b"mif1", b"mif1", b"heic")) == "HEIF"
    assert sniff_format(ftyp(b"avis", b"avis", b"msf1")) == "AVIF"


def test_classify_unknown(corpus: Path) -> None:
    assert classify_unknown(head(EDGE / "text_file_not_image.jpg", 512)) == ("not_image", "looks like text")
    assert classify_unknown(b"<?xml version='1.0'?>\n<svg xmlns='http://www.w3.org/2000/svg'/>")[0] == "unsupported"
    assert classify_unknown(b"<!DOCTYPE html><html>")[1] == "looks like HTML"
    assert classify_unknown(b"%PDF-1.7\n")[1] == "looks like a PDF document"
    assert classify_unknown("中文文本，不是图片。".encode()) == ("not_image", "looks like text")
    assert classify_unknown(bytes(range(256)))[1] == "unknown binary data"
    assert classify_unknown(b"\x00\x00\x00\x0cJXL \r\n\x87\n")[0] == "unsupported"


@needs_full_corpus
def test_declared_sizes_of_bombs(corpus: Path) -> None:
    def size(name: str) -> tuple[int, int] | None:
        data = (EDGE / name).read_bytes()
        return declared_size(data, sniff_format(data[:SNIFF_BYTES]))

    assert size("pillow_bmp_reallybig.bmp") == (3_000_000, 2_000_000)
    assert size("libvips_17000x17000.avif") == (17000, 17000)
    w, h = size("pillow_heif_200MP.heic") or (0, 0)
    assert w * h == 12240 * 16320  # ispe is the stored (pre-rotation) size
    w, h = size("pillow_decompression_bomb_extents.gif") or (0, 0)
    assert w * h > 4_000_000_000  # the second frame's extents, not the 100x100 screen
    w, h = size("pillow_decompression_bomb.ico") or (0, 0)
    assert w * h > 1_000_000_000  # the embedded image, not the 16x16 directory entry
    # ordinary files report their real size
    assert size("PETS.JPEG") == (512, 430)
    assert size("pillow_iss634.webp") == (245, 245)
    assert size("pillow_iss634.gif") == (245, 245)
    assert size("intel_bicycle.bmp") == (692, 519)
    assert size("exifsamples_IMG_5195.HEIC") == (2566, 3313)
    assert size("pillow_itxt_chunks.png") == (2400, 2000)


def test_declared_size_never_raises_on_garbage() -> None:
    for fmt in sorted(IMAGE_FORMATS):
        for blob in (b"", b"\xff" * 7, bytes(range(256)) * 3):
            declared_size(blob, fmt)


@needs_full_corpus
def test_jpeg_frame_and_bmp_compression(corpus: Path) -> None:
    frame = jpeg_frame((EDGE / "libjpeg-turbo_monkey12.jpg").read_bytes())
    assert frame is not None and frame.precision == 12 and (frame.width, frame.height) == (149, 227)
    ari = jpeg_frame((EDGE / "libjpeg-turbo_testimgari.jpg").read_bytes())
    assert ari is not None and ari.arithmetic and ari.precision == 8
    junk = jpeg_frame((EDGE / "pillow_junk_jpeg_header.jpg").read_bytes())
    assert junk is not None and (junk.width, junk.height) == (1024, 768)
    assert bmp_compression((EDGE / "pillow_bmp_rgb24jpeg.bmp").read_bytes()) == 4  # BI_JPEG
    assert bmp_compression((EDGE / "intel_bicycle.bmp").read_bytes()) == 0
    assert CORPUS.is_dir()
