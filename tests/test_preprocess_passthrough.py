"""A JPEG already fit to send (the right size, upright, sRGB, baseline, not too dense) goes as its own coded bytes
with the metadata segments cut (ingest/jpegpass.py): the model sees exactly the source's pixels, nothing personal
goes with them, and no decode worker spends time re-encoding it. Anything else is re-encoded as before."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from imgtag.ingest.jpegpass import stripped
from imgtag.ingest.preprocess import PrepareRequest, prepare

XMP = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>secret place</x:xmpmeta>"


def photo(size: tuple[int, int] = (320, 240)) -> Image.Image:
    rng = np.random.default_rng(5)
    w, h = size
    base = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
    noise = rng.normal(0, 10, (h // 8, w // 8, 3)).astype(np.float32).repeat(8, 0).repeat(8, 1)
    return Image.fromarray(np.clip(base * 0.8 + noise, 0, 255).astype(np.uint8))


def with_metadata(path: Path, img: Image.Image, **save: object) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0)}  # GPS
    img.save(path, "JPEG", quality=90, exif=exif.tobytes(), comment=b"private note", xmp=XMP, **save)
    return path.read_bytes()


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def test_a_jpeg_that_fits_is_sent_as_its_own_pixels_without_metadata(tmp_path: Path) -> None:
    source = with_metadata(tmp_path / "a.jpg", photo())
    report = prepare(PrepareRequest(str(tmp_path / "a.jpg")))
    assert report.status == "ok" and report.encoded is not None and report.media_type == "image/jpeg"
    assert np.array_equal(pixels(report.encoded), pixels(source))  # no second generation of JPEG loss
    for secret in (b"CameraMaker", b"private note", b"secret place", b"Exif\x00\x00"):
        assert secret in source and secret not in report.encoded
    with Image.open(io.BytesIO(report.encoded)) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (320, 240)
        assert not im.info.get("exif") and "xmp" not in im.info and "comment" not in im.info
    assert (report.out_width, report.out_height) == (320, 240)


def test_what_cannot_go_as_it_is_is_encoded_again(tmp_path: Path) -> None:
    cases = {
        "progressive.jpg": dict(progressive=True),
        "big.jpg": dict(size=(2400, 1600)),             # larger than the model's 1568 px edge
    }
    for name, opts in cases.items():
        size = opts.pop("size", (320, 240))
        photo(size).save(tmp_path / name, "JPEG", **{"quality": 90, **opts})  # type: ignore[arg-type]
    photo().save(tmp_path / "tail.jpg", "JPEG", quality=90)
    (tmp_path / "tail.jpg").write_bytes((tmp_path / "tail.jpg").read_bytes() + b"appended video or picture")
    grain = np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    Image.fromarray(grain).save(tmp_path / "dense.jpg", "JPEG", quality=95)  # past 3 bits per pixel
    exif = Image.Exif()
    exif[0x0112] = 6  # turned: the pixels sent are not the stored ones
    photo().save(tmp_path / "turned.jpg", "JPEG", quality=90, exif=exif.tobytes())
    assert (tmp_path / "dense.jpg").stat().st_size * 8 > 3 * 320 * 240
    for name in (*cases, "dense.jpg", "tail.jpg", "turned.jpg"):
        source = (tmp_path / name).read_bytes()
        report = prepare(PrepareRequest(str(tmp_path / name)))
        assert report.status == "ok" and report.encoded is not None, name
        assert stripped(report.encoded) is not None, name  # what we encode is plain baseline
        assert report.encoded != stripped(source), name


def test_stripped_keeps_the_frame_and_cuts_only_metadata(tmp_path: Path) -> None:
    source = with_metadata(tmp_path / "a.jpg", photo())
    cut = stripped(source)
    assert cut is not None and len(cut) < len(source) and stripped(cut) == cut
    assert cut.startswith(b"\xff\xd8\xff\xe0") and cut.endswith(b"\xff\xd9")  # JFIF kept
    assert stripped(source[:-1]) is None and stripped(source + b"\x00") is None and stripped(b"GIF89a") is None
