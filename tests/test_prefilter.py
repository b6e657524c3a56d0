"""Blur score, perceptual hash and the duplicate indexes, on real corpus photos."""

from __future__ import annotations

import random
import re
from pathlib import Path

import imagehash
import pytest
from PIL import Image, ImageFilter, ImageOps

from conftest import EDGE, PHOTOS, needs_full_corpus
from imgtag.ingest.prefilter import (
    ANALYSIS_EDGE,
    BLURRY_BELOW,
    ExactDuplicateIndex,
    NearDuplicateIndex,
    analysis_thumbnail,
    blur_score,
    hamming,
    phash_hex,
)

OTHER_PHOTO = "clothing_hat_75eacbac.jpg"  # in the vendored subset too


def upright(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


def test_hamming() -> None:
    assert hamming("0000000000000000", "0000000000000000") == 0
    assert hamming("ffffffffffffffff", "0000000000000000") == 64
    assert hamming("8000000000000001", "0000000000000000") == 2


def test_phash_is_imagehash_phash(corpus: Path) -> None:
    img = upright(PHOTOS / "coral_owl.jpg")
    h = phash_hex(img)
    # imagehash's own DCT hash of the same greyscale thumbnail, bit for bit, as 16 lowercase hex digits.
    assert re.fullmatch(r"[0-9a-f]{16}", h) and h == str(imagehash.phash(analysis_thumbnail(img)))
    # A hash that says something: a different photo is far away, a rescaled copy of this one is close.
    assert hamming(h, phash_hex(upright(PHOTOS / OTHER_PHOTO))) > 12
    assert hamming(h, phash_hex(img.resize((img.width // 3, img.height // 3)))) <= 4
    # Same algorithm as imagehash (on the analysis thumbnail): within a couple of bits of the
    # hash of the full-size image, so hashes from other tools stay comparable.
    assert hamming(h, str(imagehash.phash(img))) <= 4


@needs_full_corpus
def test_analysis_thumbnail_size_and_modes(corpus: Path) -> None:
    big = upright(PHOTOS / "exifpy_HMD_Nokia_8.3_5G.jpg")
    thumb = analysis_thumbnail(big)
    assert thumb.mode == "L" and max(thumb.size) == ANALYSIS_EDGE
    small = Image.open(EDGE / "pillow_heif_LA_8.png")
    assert analysis_thumbnail(small).size == small.size  # never upscales
    # transparency is composited on white, not black
    with Image.open(EDGE / "pillow_transparent.png") as im:
        assert im.getpixel((0, 0))[3] == 0
        assert analysis_thumbnail(im).getpixel((0, 0)) == 255
    with Image.open(EDGE / "pillow_i_trns.png") as im:  # 16-bit grey: scaled, no crash
        assert analysis_thumbnail(im).mode == "L"


@needs_full_corpus
def test_blur_separates_sharp_from_blurred(corpus: Path) -> None:
    names = [
        "coral_owl.jpg",
        "darknet_dog.jpg",
        "exifpy_nikon-e950.jpg",
        "pillow_xmp_test.jpg",
        "cnocr_fanti.jpg",
        "exifpy_DSCN0040.jpg",
    ]
    for name in names:
        img = upright(PHOTOS / name)
        sharp = blur_score(img)
        # 2 px of Gaussian blur at thumbnail scale, whatever the original resolution.
        radius = 2 * max(img.size) / ANALYSIS_EDGE
        blurred = blur_score(img.filter(ImageFilter.GaussianBlur(radius)))
        assert sharp > BLURRY_BELOW > blurred, (name, sharp, blurred)
    # comparable across sizes: the same photo at half resolution scores similarly
    img = upright(PHOTOS / "exifpy_22-canon_tags.jpg")
    half = img.resize((img.width // 2, img.height // 2), Image.Resampling.LANCZOS)
    assert 0.5 < blur_score(half) / blur_score(img) < 2.0
    assert blur_score(Image.new("RGB", (300, 200), "gray")) == 0.0


def test_blur_score_is_the_exact_variance() -> None:
    # The Laplacian's variance to the last bit: computed in integers, not float32 (which drifted in the 7th digit
    # and was the slowest step of a decode worker).
    from fractions import Fraction

    grey = Image.effect_noise((64, 48), 60).convert("L")
    px = [[grey.getpixel((x, y)) for x in range(64)] for y in range(48)]
    lap = [px[y][x - 1] + px[y][x + 1] + px[y - 1][x] + px[y + 1][x] - 4 * px[y][x]
           for y in range(1, 47) for x in range(1, 63)]
    n = len(lap)
    exact = Fraction(sum(v * v for v in lap), n) - Fraction(sum(lap), n) ** 2
    assert blur_score(grey) == float(exact)


@needs_full_corpus
def test_near_duplicates_in_corpus(corpus: Path) -> None:
    index = NearDuplicateIndex(max_distance=6)
    # Same scene, EXIF-rotated variants (after orientation), and a byte-identical copy.
    assert index.add("L1", phash_hex(upright(PHOTOS / "recurser_Landscape_1.jpg"))) is None
    for n in (3, 6, 7, 8):
        assert index.add(f"L{n}", phash_hex(upright(PHOTOS / f"recurser_Landscape_{n}.jpg"))) == "L1"
    assert index.add("pets", phash_hex(upright(PHOTOS / "coral_pets.jpg"))) is None
    assert index.add("PETS", phash_hex(upright(EDGE / "PETS.JPEG"))) == "pets"
    # Same photo saved as JPEG and PNG.
    assert index.add("bike.jpg", phash_hex(upright(PHOTOS / "intel_bicycle.jpg"))) is None
    assert index.add("bike.png", phash_hex(upright(PHOTOS / "intel_bicycle.png"))) == "bike.jpg"
    # Unrelated photos are not near-duplicates of anything.
    for name in ("coral_owl.jpg", "darknet_giraffe.jpg", "skimage_coffee.png", "easyocr_french.jpg"):
        assert index.add(name, phash_hex(upright(PHOTOS / name))) is None, name
    assert len(index) == 13


def test_near_duplicate_index_is_exact_against_brute_force() -> None:
    rng = random.Random(1234)
    for max_distance in (0, 3, 6, 10):
        index = NearDuplicateIndex(max_distance)
        seen: list[tuple[str, int]] = []
        base = [rng.getrandbits(64) for _ in range(40)]
        for i in range(600):
            # Mostly noisy copies of a few originals, so there are many close pairs.
            value = rng.choice(base)
            for _ in range(rng.randint(0, 12)):
                value ^= 1 << rng.randrange(64)
            key, hexval = f"k{i}", f"{value:016x}"
            expected = None
            best = None
            for k, v in seen:
                d = bin(v ^ value).count("1")
                if d <= max_distance and (best is None or d < best):
                    best, expected = d, k
            assert index.add(key, hexval) == expected
            seen.append((key, value))


def test_near_duplicate_index_rejects_bad_distance() -> None:
    with pytest.raises(ValueError):
        NearDuplicateIndex(-1)


def test_exact_duplicate_index(corpus: Path) -> None:
    import hashlib

    index = ExactDuplicateIndex()
    pairs = [
        (PHOTOS / "coral_pets.jpg", EDGE / "PETS.JPEG"),
        (PHOTOS / "easyocr_chinese.jpg", EDGE / "中文路牌_愚园路.jpg"),
        (PHOTOS / "cnocr_huochepiao.jpeg", EDGE / "中文目录" / "火车票 照片.jpeg"),
    ]
    for first, copy in pairs:
        assert index.add(str(first), hashlib.sha256(first.read_bytes()).hexdigest()) is None
        assert index.add(str(copy), hashlib.sha256(copy.read_bytes()).hexdigest()) == str(first)
    assert len(index) == 3
