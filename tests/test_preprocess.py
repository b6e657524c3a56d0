"""preprocess on the real, nasty corpus: every rule checked with actual files."""

from __future__ import annotations

import hashlib
import io
import os
import random
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from conftest import CORPUS, EDGE, PHOTOS, needs_full_corpus
from imgtag.ingest.prefilter import hamming
from imgtag.ingest.preprocess import ImageReport, PrepareRequest, prepare, prepare_many
from imgtag.pricing.sizing import HIGH_RES, STANDARD, fit_size, visual_tokens

REASON_CODES = {
    "empty",
    "not_image",
    "unsupported",
    "truncated",
    "corrupt",
    "bomb",
    "too_small",
    "unreadable",
}


def all_corpus_files() -> list[Path]:
    return sorted(p for p in (*EDGE.rglob("*"), *PHOTOS.rglob("*")) if p.is_file())


@pytest.fixture(scope="module")
def reports(corpus: Path) -> dict[str, ImageReport]:
    """Every corpus file through the pool once, default request (STANDARD, encode)."""
    files = all_corpus_files()
    out = {r.path: r for r in prepare_many((PrepareRequest(str(p)) for p in files), workers=2)}
    assert len(out) == len(files)
    return {str(Path(k).relative_to(CORPUS)): v for k, v in out.items()}


def run(path: Path | str, **kw: object) -> ImageReport:
    return prepare(PrepareRequest(str(path), **kw))  # type: ignore[arg-type]


def decoded(rep: ImageReport) -> Image.Image:
    assert rep.encoded is not None, rep.reason
    im = Image.open(io.BytesIO(rep.encoded))
    im.load()
    return im


# --- the whole corpus ------------------------------------------------------------------------


def test_every_file_gets_a_sane_report(reports: dict[str, ImageReport]) -> None:
    for name, rep in reports.items():
        assert rep.status in ("ok", "skipped", "failed"), name
        if rep.status == "ok":
            assert rep.reason_code is None and rep.reason is None
            assert rep.out_width and rep.out_height and rep.encoded and rep.media_type == "image/jpeg"
            assert max(rep.out_width, rep.out_height) <= STANDARD.max_long_edge
            assert rep.visual_tokens == visual_tokens(rep.out_width, rep.out_height) <= STANDARD.max_patches
            assert (rep.out_width, rep.out_height) == fit_size(rep.width or 0, rep.height or 0, STANDARD)
            im = decoded(rep)
            assert im.format == "JPEG" and im.mode == "RGB", name
            assert im.size == (rep.out_width, rep.out_height), name
            # metadata stripped: no EXIF (orientation already applied), no ICC, no XMP
            assert not im.info.get("exif") and not im.info.get("icc_profile") and "xmp" not in im.info
            assert rep.phash and len(rep.phash) == 16 and rep.blur is not None
        else:
            assert rep.reason_code in REASON_CODES, name
            assert rep.reason and "\n" not in rep.reason and len(rep.reason) <= 200, name
            assert "Traceback" not in rep.reason and not re.search(r" at 0x[0-9a-f]+", rep.reason), rep.reason
            assert rep.encoded is None and rep.out_width is None
        assert rep.bytes == (CORPUS / name).stat().st_size


def test_all_photos_are_ok_or_too_small(reports: dict[str, ImageReport]) -> None:
    for name, rep in reports.items():
        if name.startswith("photos/"):
            assert rep.status == "ok" or rep.reason_code == "too_small", (name, rep.reason)


def test_sha256_from_the_same_read(reports: dict[str, ImageReport]) -> None:
    for name in ("photos/coral_pets.jpg", "edge/PETS.JPEG", "edge/zero_bytes.jpg", "edge/pillow_broken.png"):
        assert reports[name].sha256 == hashlib.sha256((CORPUS / name).read_bytes()).hexdigest()
    assert reports["photos/coral_pets.jpg"].sha256 == reports["edge/PETS.JPEG"].sha256


# --- orientation --------------------------------------------------------------------------------


@needs_full_corpus
def test_every_exif_orientation_is_turned_upright(reports: dict[str, ImageReport], tmp_path: Path) -> None:
    ref = reports["photos/recurser_Landscape_1.jpg"]
    assert (ref.width, ref.height) == (1800, 1200)
    ref_img = decoded(ref)
    for n in (3, 6, 7, 8):
        rep = reports[f"photos/recurser_Landscape_{n}.jpg"]
        assert (rep.width, rep.height) == (1800, 1200), n
        assert rep.phash and ref.phash and hamming(rep.phash, ref.phash) <= 2, n
        # pixels, not just hashes: the picture matches the upright reference closely
        diff = np.abs(np.asarray(decoded(rep), dtype=np.int16) - np.asarray(ref_img, dtype=np.int16))
        assert diff.mean() < 12, (n, diff.mean())
    # Orientations 2 and 4 (mirrors) are not in the corpus: make them from the upright photo.
    with Image.open(PHOTOS / "recurser_Landscape_1.jpg") as im:
        upright = im.convert("RGB")
    for n, op in ((2, Image.Transpose.FLIP_LEFT_RIGHT), (4, Image.Transpose.FLIP_TOP_BOTTOM)):
        exif = Image.Exif()
        exif[0x0112] = n
        path = tmp_path / f"orientation_{n}.jpg"
        upright.transpose(op).save(path, quality=90, exif=exif.tobytes())
        rep = run(path)
        assert rep.phash and ref.phash and hamming(rep.phash, ref.phash) <= 2, n
    portraits = [reports[f"photos/recurser_Portrait_{n}.jpg"] for n in (5, 6, 8)]
    for rep in portraits:
        assert (rep.width, rep.height) == (1200, 1800)  # stored 1800x1200
        assert rep.out_height and rep.out_width and rep.out_height > rep.out_width
        assert rep.phash and portraits[0].phash and hamming(rep.phash, portraits[0].phash) <= 2


@needs_full_corpus
def test_orientation_edge_cases(reports: dict[str, ImageReport]) -> None:
    rep = reports["edge/libvips_rotation_6_progressive.jpg"]
    assert rep.status == "ok" and (rep.width, rep.height) == (231, 308)
    zero = reports["edge/recurser_Landscape_0_orientation0.jpg"]  # invalid value 0: ignored
    assert zero.status == "ok" and (zero.width, zero.height) == (1800, 1200)
    ref = reports["photos/recurser_Landscape_1.jpg"]
    assert zero.phash and ref.phash and hamming(zero.phash, ref.phash) <= 4
    avif = reports["edge/pillow_avif_rot1mir0.avif"]  # irot/imir exposed as EXIF orientation 5
    assert avif.status == "ok" and (avif.width, avif.height) == (640, 427)
    for name in (
        "edge/pillow_invalid-exif.jpg",
        "edge/pillow_hopper_bad_exif.jpg",
        "edge/exifpy_corrupted_exif_10MP.jpg",
    ):
        assert reports[name].status == "ok", name  # broken EXIF never stops the decode


def test_webp_orientation_5_matches_upright_hopper() -> None:
    rotated = run(EDGE / "pillow_hopper_orientation_5.webp", min_short_side=0)
    upright = run(EDGE / "pillow_hopper_bigtiff.tif", min_short_side=0)
    assert rotated.phash and upright.phash and hamming(rotated.phash, upright.phash) <= 4
    with Image.open(EDGE / "pillow_hopper_orientation_5.webp") as raw:
        assert hamming(rotated.phash, f"{_phash_raw(raw)}") > 16  # not left as stored


def _phash_raw(img: Image.Image) -> str:
    import imagehash

    return str(imagehash.phash(img))


@needs_full_corpus
def test_draft_keeps_original_oriented_size() -> None:
    # Big rotated JPEG: decoded at a DCT-reduced size, but reported at the original size.
    rep = run(PHOTOS / "recurser_Portrait_6.jpg", max_long_edge=300)
    assert (rep.width, rep.height) == (1200, 1800)
    assert (rep.out_width, rep.out_height) == (200, 300)
    assert decoded(rep).size == (200, 300)
    big = run(EDGE / "exifpy_corrupted_exif_10MP.jpg", encode=False)
    assert (big.width, big.height) == (3648, 2736) and big.encoded is None


# --- colour and modes ---------------------------------------------------------------------------


def test_cmyk_tiff_becomes_rgb() -> None:
    rep = run(EDGE / "pillow_tiff_tiled_cmyk_jpeg.tif", min_short_side=0)
    assert rep.status == "ok" and rep.format == "TIFF"
    with Image.open(EDGE / "pillow_tiff_tiled_cmyk_jpeg.tif") as im:
        expected = np.asarray(im.convert("RGB"), dtype=np.int16)
    assert np.abs(np.asarray(decoded(rep), dtype=np.int16) - expected).mean() < 10  # JPEG noise


def test_lab_tiff() -> None:
    rep = run(EDGE / "pillow_hopper.Lab.tif", min_short_side=0)
    ref = run(EDGE / "pillow_hopper_bigtiff.tif", min_short_side=0)
    assert rep.status == "ok" and rep.phash and ref.phash and hamming(rep.phash, ref.phash) <= 6
    diff = np.abs(np.asarray(decoded(rep), dtype=np.int16) - np.asarray(decoded(ref), dtype=np.int16))
    assert diff.mean() < 15  # same picture, same colours (within JPEG + colour-space rounding)


def test_16bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    with Image.open(PHOTOS / "skimage_coins.png") as im:
        grey8 = np.asarray(im.convert("L"), dtype=np.uint16)
    path = tmp_path / "coins16.png"
    Image.fromarray(grey8 * 257).save(path)  # full 16-bit range
    with Image.open(path) as check:
        assert check.mode.startswith("I")
    out = np.asarray(decoded(run(path)).convert("L"), dtype=np.int16)
    assert np.abs(out - grey8.astype(np.int16)).mean() < 3  # clipping would make it all white
    # 16-bit RGB PNG, 16-bit RGBA TIFF and 16-bit APNG decode too.
    for name in ("libjpeg-turbo_monkey16.png", "pillow_tiff_16bit_RGBa.tiff", "pillow_apng_mode_16bit.png"):
        assert run(EDGE / name, min_short_side=0).status == "ok", name


def test_16bit_grey_with_trns_key() -> None:
    rep = run(EDGE / "pillow_i_trns.png", min_short_side=0)
    img = np.asarray(decoded(rep).convert("L"))
    with Image.open(EDGE / "pillow_i_trns.png") as im:
        key = im.info["transparency"]
        raw = np.asarray(im)
    # Values 0..255 in a 16-bit image are nearly black; keyed pixels are transparent -> white.
    assert img[raw == key].mean() > 240
    assert img[raw != key].mean() < 15


def _transparent_spot(path: Path, radius: int = 3) -> tuple[int, int]:
    """A pixel whose whole neighbourhood is fully transparent (so JPEG blocks can't blur it)."""
    with Image.open(path) as im:
        clear = np.asarray(im.convert("RGBA").getchannel("A")) == 0
    k = 2 * radius + 1
    sums = np.pad(clear.astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    window = sums[k:, k:] - sums[:-k, k:] - sums[k:, :-k] + sums[:-k, :-k]
    ys, xs = np.nonzero(window == k * k)
    assert len(ys), f"no transparent area in {path.name}"
    return int(xs[0]) + radius, int(ys[0]) + radius


@pytest.mark.parametrize(
    "name",
    [
        "pillow_transparent.png",  # RGBA
        "libvips_cogs.gif",  # palette + transparency index
        "pillow_avif_transparency.avif",  # AVIF alpha
        "pillow_avif_star.avifs",  # animated AVIF, RGBA
    ],
)
def test_transparent_pixels_become_white(name: str) -> None:
    xy = _transparent_spot(EDGE / name)
    rep = run(EDGE / name, min_short_side=0)
    assert rep.status == "ok", rep.reason
    assert min(decoded(rep).getpixel(xy)) >= 240  # type: ignore[arg-type]


def test_bmp_with_alpha_channel() -> None:
    rep = run(EDGE / "pillow_bmp_rgba32.bmp", min_short_side=0)
    with Image.open(EDGE / "pillow_bmp_rgba32.bmp") as im:
        clear = np.asarray(im.getchannel("A")) == 0
    out = np.asarray(decoded(rep).convert("L"), dtype=np.int16)
    assert out[clear].mean() > out[~clear].mean() + 40  # thin transparent strokes show as light


def test_la_composited_on_white() -> None:
    rep = run(EDGE / "pillow_heif_LA_8.png", min_short_side=0)
    with Image.open(EDGE / "pillow_heif_LA_8.png") as im:
        alpha = np.asarray(im.getchannel("A"))
    out = np.asarray(decoded(rep).convert("L"), dtype=np.int16)
    assert out[alpha < 8].mean() > 235  # nearly transparent -> nearly white, never black


def test_one_bit_multipage_tiff(reports: dict[str, ImageReport]) -> None:
    rep = reports["edge/pillow_g4-multi.tiff"]  # 1-bit, 3 pages, 15.5 MP in 3 KB
    assert rep.status == "ok" and (rep.width, rep.height) == (3307, 4677)
    assert decoded(rep).mode == "RGB"


def test_icc_profiles_are_applied() -> None:
    path = EDGE / "libvips_sample-xyb.jpg"  # XYB JPEG: garbage colours unless the ICC is used
    rep = run(path)
    out = np.asarray(decoded(rep), dtype=np.int16)
    with Image.open(path) as im:
        naive = np.asarray(im.convert("RGB"), dtype=np.int16)
        managed = ImageCms.profileToProfile(
            im, ImageCms.ImageCmsProfile(io.BytesIO(im.info["icc_profile"])), ImageCms.createProfile("sRGB")
        )
        assert managed is not None
        expected = np.asarray(managed.convert("RGB"), dtype=np.int16)
    assert np.abs(out - expected).mean() < 4
    assert np.abs(out - naive).mean() > 20
    # A broken 7-byte profile and a 400 KB one: both still decode.
    assert run(EDGE / "pillow_icc-after-SOF.jpg", min_short_side=0).status == "ok"
    assert run(EDGE / "pillow_icc_profile_big.jpg").status == "ok"


# --- animation, containers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["pillow_iss634.gif", "pillow_iss634.webp", "pillow_avif_star.avifs", "pillow_apng_mode_16bit.png"],
)
def test_first_frame_only(name: str) -> None:
    rep = run(EDGE / name, min_short_side=0)
    assert rep.status == "ok", rep.reason
    out = np.asarray(decoded(rep), dtype=np.int16)
    frames = []
    with Image.open(EDGE / name) as im:
        for i in (0, im.n_frames // 2):  # (some loops end on a copy of the first frame)
            im.seek(i)
            rgba = im.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            frames.append(np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.int16))
    first, middle = (np.abs(out - f).mean() for f in frames)
    assert first < 6 and first < middle, (first, middle)


@needs_full_corpus
def test_heif_family(reports: dict[str, ImageReport]) -> None:
    expected = {
        "edge/exifsamples_IMG_5195.HEIC": ("HEIF", 2566, 3313),
        "edge/libheif_example.heic": ("HEIF", 1280, 854),
        "edge/libheif_example.avif": ("AVIF", 800, 533),
        "edge/pillow_heif_cat.hif": ("HEIF", 4240, 2832),
    }
    for name, (fmt, w, h) in expected.items():
        rep = reports[name]
        assert rep.status == "ok", (name, rep.reason)
        assert (rep.format, rep.width, rep.height) == (fmt, w, h), name
    small = run(EDGE / "pillow_heif_RGBA_12bit_29x100.heif", min_short_side=0)
    assert small.status == "ok" and (small.width, small.height) == (29, 100)
    corrupt = reports["edge/pillow_heif_corrupted.heic"]
    assert (corrupt.status, corrupt.reason_code) == ("failed", "corrupt")


def test_mpo_and_jpeg2000(reports: dict[str, ImageReport]) -> None:
    for name in ("edge/pillow_frozenpond.mpo", "edge/pillow_sugarshack.mpo"):
        rep = reports[name]
        assert (rep.status, rep.format, rep.width, rep.height) == ("ok", "MPO", 640, 480)
    jp2 = reports["edge/libvips_world.jp2"]
    assert (jp2.status, jp2.format, jp2.width, jp2.height) == ("ok", "JPEG2000", 800, 400)


# --- failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "pillow_truncated_image.png",
        "pillow_truncated_end_chunk.png",
        "skimage_truncated.jpg",
        "pillow_ultrahdr_truncated.jpg",
    ],
)
def test_truncated(reports: dict[str, ImageReport], name: str) -> None:
    rep = reports[f"edge/{name}"]
    assert (rep.status, rep.reason_code) == ("failed", "truncated")
    assert rep.reason and rep.reason.startswith("truncated:") and rep.format in rep.reason


@pytest.mark.parametrize(
    "name",
    [
        "pillow_decompression_bomb.ico",
        "pillow_bmp_reallybig.bmp",
        "pillow_decompression_bomb_extents.gif",
        "libvips_17000x17000.avif",
        pytest.param("pillow_heif_200MP.heic", marks=needs_full_corpus),
        "pillow_png_decompression_dos.png",
    ],
)
def test_bombs(reports: dict[str, ImageReport], name: str) -> None:
    rep = reports[f"edge/{name}"]
    assert (rep.status, rep.reason_code) == ("failed", "bomb"), rep.reason
    assert rep.reason and rep.reason.startswith("decompression bomb:")
    if name != "pillow_png_decompression_dos.png":
        assert "limit 100 MP" in rep.reason


@needs_full_corpus
def test_bomb_reasons_name_the_declared_size(reports: dict[str, ImageReport]) -> None:
    assert reports["edge/pillow_bmp_reallybig.bmp"].reason == (
        "decompression bomb: declares 3000000x2000000 (6,000,000 MP), limit 100 MP "
        "(raise --max-megapixels to allow it)"
    )
    assert "(200 MP)" in (reports["edge/pillow_heif_200MP.heic"].reason or "")


@needs_full_corpus
def test_200mp_heic_is_refused_without_decoding() -> None:
    start = time.perf_counter()
    rep = run(EDGE / "pillow_heif_200MP.heic")
    assert rep.reason_code == "bomb" and time.perf_counter() - start < 1.0


def test_max_pixels_is_ours_not_pillows() -> None:
    rep = run(PHOTOS / "recurser_Landscape_1.jpg", max_pixels=1_000_000)  # header pre-check
    assert rep.reason_code == "bomb" and "1800x1200" in (rep.reason or "")
    tiff = run(EDGE / "pillow_g4-multi.tiff", max_pixels=10_000_000)  # Pillow's check, made strict
    assert tiff.reason_code == "bomb" and "limit 10 MP" in (tiff.reason or "")
    assert Image.MAX_IMAGE_PIXELS != 10_000_000  # global restored


def test_unsupported_variants_say_why(reports: dict[str, ImageReport]) -> None:
    jpeg12 = reports["edge/libjpeg-turbo_monkey12.jpg"]
    assert (jpeg12.status, jpeg12.reason_code) == ("failed", "unsupported")
    assert "12-bit JPEG" in (jpeg12.reason or "")
    bmp = reports["edge/pillow_bmp_rgb24jpeg.bmp"]
    assert bmp.reason_code == "unsupported" and "BI_JPEG" in (bmp.reason or "")
    for name in ("edge/pillow_bmp_badbitcount.bmp", "edge/pillow_broken.png", "edge/pillow_zero_width.gif"):
        assert (reports[name].status, reports[name].reason_code) == ("failed", "corrupt"), name


def test_empty_and_not_image(reports: dict[str, ImageReport]) -> None:
    empty = reports["edge/zero_bytes.jpg"]
    assert (empty.status, empty.reason_code, empty.bytes) == ("skipped", "empty", 0)
    text = reports["edge/text_file_not_image.jpg"]
    assert (text.status, text.reason_code) == ("skipped", "not_image")
    assert "looks like text" in (text.reason or "")
    assert text.format is None and text.sha256


def test_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = run(tmp_path / "gone.jpg")  # vanished between discovery and preprocessing
    assert (missing.status, missing.reason_code) == ("failed", "unreadable")
    assert run(tmp_path).reason_code == "unreadable"  # a directory
    locked = tmp_path / "locked.jpg"
    shutil.copy(PHOTOS / "coral_owl.jpg", locked)
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        locked.chmod(0)
    else:  # root ignores file modes: simulate the refusal instead

        def denied(*_args: object, **_kw: object) -> None:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr("imgtag.ingest.preprocess.open", denied, raising=False)
    rep = run(locked)
    assert (rep.status, rep.reason_code, rep.reason) == ("failed", "unreadable", "unreadable: Permission denied")


def test_content_decides_not_extension(tmp_path: Path) -> None:
    png = tmp_path / "photo.jpg"
    shutil.copy(PHOTOS / "skimage_coffee.png", png)
    heic = tmp_path / "IMG_0001.JPG"
    shutil.copy(EDGE / "libheif_example.heic", heic)
    assert (run(png).status, run(png).format) == ("ok", "PNG")
    assert (run(heic).status, run(heic).format) == ("ok", "HEIF")


def test_non_ascii_and_non_utf8_names(reports: dict[str, ImageReport], tmp_path: Path) -> None:
    assert reports["edge/中文路牌_愚园路.jpg"].status == "ok"
    assert reports["edge/中文目录/火车票 照片.jpeg"].status == "ok"
    raw = os.fsencode(tmp_path) + b"/\xff\xfe latin-1 \xe9t\xe9.jpg"  # not valid UTF-8
    with open(raw, "wb") as f:
        f.write((PHOTOS / "coral_owl.jpg").read_bytes())
    name = os.fsdecode(raw)  # str with surrogate escapes, as os.scandir would give
    rep = run(name)
    assert rep.status == "ok" and rep.path == name


# --- sizing, budget, scan mode ------------------------------------------------------------------


def test_too_small_still_reports_facts(reports: dict[str, ImageReport]) -> None:
    rep = reports["edge/pillow_hopper_gray.jpg"]
    assert (rep.status, rep.reason_code) == ("skipped", "too_small")
    assert rep.reason == "too small: 128x128 px (short side under 200 px; use --min-side 0 to tag anyway)"
    assert (rep.format, rep.width, rep.height) == ("JPEG", 128, 128)
    assert rep.sha256 and rep.phash and rep.blur is not None
    assert rep.encoded is None and rep.out_width is None
    assert run(EDGE / "pillow_hopper_gray.jpg", min_short_side=0).status == "ok"


def test_tiers_and_presets(reports: dict[str, ImageReport]) -> None:
    std = reports["photos/coral_cat_1080p.jpg"]
    assert (std.out_width, std.out_height, std.visual_tokens) == (1456, 819, 1560)
    high = run(PHOTOS / "coral_cat_1080p.jpg", tier=HIGH_RES)
    assert (high.out_width, high.out_height, high.visual_tokens) == (1920, 1080, 2691)
    assert decoded(high).size == (1920, 1080)
    low = run(PHOTOS / "coral_cat_1080p.jpg", max_long_edge=768)
    assert (low.out_width, low.out_height) == (768, 432) and decoded(low).size == (768, 432)


@needs_full_corpus
def test_scan_mode_skips_encode_but_estimates() -> None:
    rep = run(PHOTOS / "exifpy_HMD_Nokia_8.3_5G.jpg", encode=False)
    assert rep.status == "ok" and rep.encoded is None and rep.media_type is None
    assert (rep.out_width, rep.out_height) == fit_size(4608, 1976, STANDARD)
    assert rep.visual_tokens == visual_tokens(rep.out_width or 0, rep.out_height or 0)
    full = run(PHOTOS / "exifpy_HMD_Nokia_8.3_5G.jpg")
    assert rep.phash and full.phash and hamming(rep.phash, full.phash) <= 4  # same picture


@needs_full_corpus
def test_byte_budget(tmp_path: Path) -> None:
    rep = run(PHOTOS / "pillow_xmp_test.jpg", max_bytes=40_000)
    assert rep.status == "ok" and rep.encoded and len(rep.encoded) <= 40_000
    im = decoded(rep)
    assert im.size == (rep.out_width, rep.out_height)
    assert rep.visual_tokens == visual_tokens(*im.size)


def test_no_hashes_when_not_wanted() -> None:
    rep = run(PHOTOS / "coral_owl.jpg", want_hashes=False)
    assert rep.status == "ok" and rep.phash is None and rep.blur is None


# --- the pool -----------------------------------------------------------------------------------


def test_prepare_many_bounded_and_complete(corpus: Path) -> None:
    files = [*sorted(PHOTOS.glob("clothing_*.jpg")), EDGE / "zero_bytes.jpg", EDGE / "pillow_broken.png"]
    pulled = 0
    max_ahead = 0
    consumed = 0

    def source() -> Iterator[PrepareRequest]:
        nonlocal pulled, max_ahead
        for path in files:
            pulled += 1
            max_ahead = max(max_ahead, pulled - consumed)
            yield PrepareRequest(str(path), encode=False)

    seen = []
    for rep in prepare_many(source(), workers=2, max_pending=3):
        consumed += 1
        seen.append(rep.path)
        time.sleep(0.01)  # a slow consumer must not make the producer run ahead
    assert sorted(seen) == sorted(str(p) for p in files)
    assert max_ahead <= 3
    # in-process path (workers=1) gives the same reports
    single = {r.path: r.status for r in prepare_many((PrepareRequest(str(p), encode=False) for p in files), workers=1)}
    assert len(single) == len(files)


class _KillsWorker(PrepareRequest):
    """Unpickling this in a worker ends the process abruptly: a stand-in for a decoder segfault."""

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return (os._exit, (70,))


def test_prepare_many_survives_a_worker_crash(corpus: Path) -> None:
    good = [PrepareRequest(str(PHOTOS / name), encode=False) for name in ("coral_owl.jpg", "darknet_dog.jpg")]
    bad = _KillsWorker(str(EDGE / "intel_bicycle.bmp"))
    more = [PrepareRequest(str(p), encode=False) for p in sorted(PHOTOS.glob("clothing_hat_*.jpg"))]
    reqs = [*good, bad, *more]
    out = {r.path: r for r in prepare_many(reqs, workers=2, max_pending=4)}
    assert len(out) == len(reqs)
    crashed = out[bad.path]
    assert (crashed.status, crashed.reason_code) == ("failed", "corrupt")
    assert crashed.reason == "corrupt: decoder crashed (worker process died)"
    for req in (*good, *more):
        assert out[req.path].status == "ok", out[req.path].reason


def test_mutilated_files_never_raise(tmp_path: Path, corpus: Path) -> None:
    """Truncate and flip bytes of real files: always one clean report, whatever the decoder does.

    Run through the pool, so a decoder crash on a mutated file is contained like in production.
    """
    rng = random.Random(20261121)
    sources = [p for p in sorted(EDGE.iterdir()) if p.is_file() and 0 < p.stat().st_size < 200_000]
    paths = []
    for i in range(120):
        src = rng.choice(sources)
        data = bytearray(src.read_bytes())
        if rng.random() < 0.6:
            data = data[: rng.randrange(8, len(data))]
        for _ in range(rng.randint(0, 12)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path = tmp_path / f"m{i:03d}{src.suffix}"
        path.write_bytes(bytes(data))
        paths.append(path)
    reps = list(prepare_many((PrepareRequest(str(p), min_short_side=0) for p in paths), workers=2))
    assert len(reps) == len(paths)
    for rep in reps:
        if rep.status == "ok":
            assert decoded(rep).size == (rep.out_width, rep.out_height)
        else:
            assert rep.reason_code in REASON_CODES and rep.reason and "\n" not in rep.reason
