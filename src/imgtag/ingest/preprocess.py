"""Turn one image file into what the model should see: decoded safely, upright, sRGB, sized so the
provider never resizes again, JPEG-encoded under the byte budget. Plus the facts the scan report
and the duplicate/blur prefilters need, computed from the same single read and decode.

`prepare` never raises: every bad input becomes an ImageReport with a one-line reason.
`prepare_many` runs it over a bounded process pool (decoding is CPU-bound and Pillow's C code
can crash on hostile files; a separate process contains both).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import multiprocessing
import os
import re
import stat
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice

import pillow_heif
from PIL import Image, ImageCms, UnidentifiedImageError

from imgtag.ingest import jpegpass, lifeline, sniff
from imgtag.pricing.sizing import STANDARD, VisionTier, fit_size, visual_tokens

# Files bigger than this are refused before reading: the biggest legitimate inputs (camera
# raws, scanner TIFFs) are well under it, and it keeps one worker from eating all memory.
MAX_FILE_BYTES = 512 * 1024 * 1024
REASON_MAX_CHARS = 200
MEDIA_TYPE = "image/jpeg"
# The one high-quality resample after draft + reduce. After those the ratio left is under 2x,
# where BICUBIC is within ~0.5 dB PSNR of LANCZOS (measured on the benchmark photos) and ~30%
# cheaper; this resize is the single most expensive step of the pipeline.
_RESAMPLE = Image.Resampling.BICUBIC
# A JPEG that needs no change is sent as it is (jpegpass.py) only up to this many bits per pixel: about what quality
# 90 gives on photos. A denser one (quality 95-100, several times the bytes for nothing the model sees) is encoded.
PASS_BITS_PER_PIXEL = 3.0
# Quality steps tried when an encode is over budget, before scaling down.
_MIN_QUALITY = 40
_QUALITY_STEP = 10


@dataclass(frozen=True)
class PrepareRequest:
    path: str  # filesystem path (may contain surrogate escapes for non-UTF-8 names)
    encode: bool = True  # False for `imgtag scan`: report only, skip the final encode
    tier: VisionTier = STANDARD
    max_long_edge: int | None = None  # preset detail level ("low" presets ask for e.g. 768)
    max_bytes: int = 5 * 1024 * 1024  # raw encoded-byte budget (base64 adds 4/3)
    max_pixels: int = 100_000_000  # decompression-bomb guard for the *declared* size
    min_short_side: int = 200  # smaller -> status "skipped", reason_code "too_small"
    jpeg_quality: int = 85
    want_hashes: bool = True  # phash + blur


@dataclass
class ImageReport:
    path: str
    status: str  # "ok" | "skipped" | "failed"
    # None when ok; else "empty", "not_image", "unsupported", "truncated", "corrupt", "bomb",
    # "too_small" or "unreadable".
    reason_code: str | None = None
    reason: str | None = None  # one human line
    format: str | None = None  # container format detected from content ("JPEG", "HEIF", ...)
    width: int | None = None  # after EXIF orientation, as a human sees it
    height: int | None = None
    bytes: int = 0  # file size
    sha256: str | None = None  # of the file bytes
    phash: str | None = None  # 16 hex chars, of the oriented image
    blur: float | None = None  # higher = sharper (prefilter.blur_score)
    out_width: int | None = None  # size sent to the model (after fit_size)
    out_height: int | None = None
    visual_tokens: int | None = None
    media_type: str | None = None  # "image/jpeg", only when encoded
    encoded: bytes | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class _Reject(Exception):
    """Internal: stop processing this file with a status and a one-line reason."""

    def __init__(self, status: str, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason


# --- per-process setup ----------------------------------------------------------------------

_PLUGINS_READY = False


def _ensure_plugins() -> None:
    """Register HEIF decoding once per process (AVIF is Pillow's own plugin in Pillow >= 11.3)."""
    global _PLUGINS_READY
    if _PLUGINS_READY:
        return
    # Thumbnails, depth maps and auxiliary images are never used: don't decode or keep them.
    pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
    Image.init()  # load every Pillow plugin now, so _open_formats sees the rarer ones (PSD, QOI)
    _PLUGINS_READY = True


def init_worker() -> None:
    """Pool worker setup: plugins, and one decode thread per process (the pool is the parallelism;
    codec thread pools on top would only oversubscribe the cores). prepare_many uses it; pass it
    as `initializer=` when running `prepare` in a pool of your own. The worker also dies with its parent
    and leaves Ctrl-C to the main process (see lifeline)."""
    lifeline.ignore_interrupts()
    lifeline.die_with_parent()
    _ensure_plugins()
    with contextlib.suppress(Exception):
        pillow_heif.options.DECODE_THREADS = 1
    with contextlib.suppress(Exception):
        from PIL import AvifImagePlugin

        AvifImagePlugin.DEFAULT_MAX_THREADS = 1


# Pillow plugin ids allowed to open each sniffed format: the sniffed type decides, so a file
# is never parsed by a plugin for some other format that happens to accept its bytes.
_PIL_FORMATS: dict[str, tuple[str, ...]] = {
    "JPEG": ("JPEG",),  # the JPEG opener itself returns MPO images for multi-picture files
    "PNG": ("PNG",),
    "GIF": ("GIF",),
    "WEBP": ("WEBP",),
    "BMP": ("BMP",),
    "TIFF": ("TIFF",),
    "HEIF": ("HEIF",),
    "AVIF": ("AVIF", "HEIF"),
    "JPEG2000": ("JPEG2000",),
    "ICO": ("ICO",),
    "PSD": ("PSD",),
    "QOI": ("QOI",),
}


def _open_formats(fmt: str) -> list[str]:
    # Only ids Pillow has an opener for: asking for an unregistered one is a KeyError in Pillow.
    return [f for f in _PIL_FORMATS.get(fmt, (fmt,)) if f in Image.OPEN]


# EXIF orientation -> the transpose that makes the image upright.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


# --- small helpers --------------------------------------------------------------------------


def _one_line(text: str) -> str:
    """Collapse whitespace, drop object reprs (addresses), cap the length."""
    text = re.sub(r"<[^<>]{0,80} at 0x[0-9a-fA-F]+>", "", text)
    text = " ".join(text.split())
    if len(text) > REASON_MAX_CHARS:
        text = text[: REASON_MAX_CHARS - 1] + "…"
    return text


def _mp(pixels: int | float) -> str:
    mp = pixels / 1e6
    return f"{mp:,.0f} MP" if mp >= 10 else f"{mp:,.1f} MP"


def _bomb(w: int, h: int, max_pixels: int) -> _Reject:
    return _Reject("failed", "bomb", f"decompression bomb: declares {w}x{h} ({_mp(w * h)}), limit {_mp(max_pixels)} "
                   "(raise --max-megapixels to allow it)")


@contextlib.contextmanager
def _pillow_guard(max_pixels: int) -> Iterator[None]:
    """Pillow's bomb limit set to *our* limit, and its bomb warning made an error.

    Pillow warns above MAX_IMAGE_PIXELS and only raises above twice that; we want a hard stop at
    the limit. Other warnings (corrupt EXIF and friends) are silenced: they are not failures and
    would only spam the log from every worker.
    """
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _read(path: str, report: ImageReport) -> bytes:
    """The whole file, read once. Special files and oversized files are refused up front."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise _Reject("failed", "unreadable", "unreadable: not a regular file")
        report.bytes = st.st_size
        if st.st_size > MAX_FILE_BYTES:
            raise _Reject(
                "failed",
                "unsupported",
                f"unsupported: file is {st.st_size / 2**20:,.0f} MB (limit {MAX_FILE_BYTES // 2**20} MB)",
            )
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        what = exc.strerror or type(exc).__name__
        raise _Reject("failed", "unreadable", f"unreadable: {_one_line(what)}") from None


def _precheck(data: bytes, fmt: str, max_pixels: int) -> None:
    """Refuse from headers alone: bombs, and codec variants Pillow cannot decode (so the user
    gets the real cause instead of 'cannot identify image file')."""
    size = sniff.declared_size(data, fmt)
    if size and size[0] * size[1] > max_pixels:
        raise _bomb(size[0], size[1], max_pixels)
    if fmt == "JPEG":
        frame = sniff.jpeg_frame(data)
        if frame and frame.precision != 8:
            raise _Reject(
                "failed",
                "unsupported",
                f"unsupported: {frame.precision}-bit JPEG (only 8-bit JPEG can be decoded; convert it first)",
            )
        if frame and frame.lossless:
            raise _Reject("failed", "unsupported", "unsupported: lossless JPEG (SOF3) cannot be decoded")
    elif fmt == "BMP":
        compression = sniff.bmp_compression(data)
        if compression in (4, 5):
            inner = "JPEG" if compression == 4 else "PNG"
            raise _Reject(
                "failed",
                "unsupported",
                f"unsupported: BMP wrapping an embedded {inner} stream (BI_{inner} compression)",
            )


def _decode_failure(exc: BaseException, fmt: str, max_pixels: int) -> _Reject:
    """Map a decoder exception to a reason code and one clean line."""
    msg = _one_line(str(exc))
    low = msg.lower()
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        m = re.search(r"\((\d+) pixels\)", msg)
        declared = f"{int(m.group(1)):,} px ({_mp(int(m.group(1)))})" if m else "a huge size"
        return _Reject("failed", "bomb", f"decompression bomb: declares {declared}, limit {_mp(max_pixels)} "
                       "(raise --max-megapixels to allow it)")
    if isinstance(exc, ValueError) and "decompressed data too large" in low:
        return _Reject(
            "failed",
            "bomb",
            f"decompression bomb: a compressed {fmt} metadata chunk inflates past the safety limit",
        )
    if "security limit" in low:  # libheif refusing an oversized or overly complex image
        return _Reject("failed", "bomb", f"decompression bomb: {fmt} exceeds the decoder's security limits")
    if isinstance(exc, MemoryError):
        return _Reject("failed", "bomb", f"decompression bomb: ran out of memory decoding this {fmt}")
    if isinstance(exc, EOFError) or "truncated" in low or "end of file" in low:
        return _Reject("failed", "truncated", f"truncated: image data ends early ({fmt})")
    if isinstance(exc, UnidentifiedImageError):
        return _Reject("failed", "corrupt", f"corrupt: {fmt} signature found but the header cannot be read")
    if (("not supported" in low or "unsupported" in low) and "depth" not in low) or "not available" in low:
        reason = _one_line(f"unsupported: {fmt} variant the decoder cannot read ({msg})")
        return _Reject("failed", "unsupported", reason)
    detail = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return _Reject("failed", "corrupt", _one_line(f"corrupt: {fmt} data could not be decoded ({detail})"))


def _orientation(im: Image.Image) -> int:
    """EXIF orientation 1..8; anything missing, invalid (0, 9+) or unparsable counts as 1."""
    try:
        value = im.getexif().get(0x0112)
    except Exception:  # corrupt EXIF blocks raise all sorts of errors: decode the pixels anyway
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _scaled_size(w: int, h: int, edge: int) -> tuple[int, int]:
    s = min(1.0, edge / max(w, h))
    return max(1, round(w * s)), max(1, round(h * s))


# --- colour handling ------------------------------------------------------------------------


def _to_reducible(img: Image.Image) -> Image.Image:
    """Modes Image.reduce cannot take (palette, 1-bit, 16/32-bit, float) -> 8-bit L/LA/RGB/RGBA."""
    mode = img.mode
    if mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if mode == "1":
        return img.convert("L")
    if mode in ("PA", "La", "RGBa"):
        return img.convert("RGBA")
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _high_depth_to_8bit(img)
    if mode in ("L", "RGB") and "transparency" in img.info:
        return img.convert("RGBA")  # tRNS colour key -> real alpha
    return img


def _high_depth_to_8bit(img: Image.Image) -> Image.Image:
    """16-bit (or 32-bit int / float) greyscale to 8 bits by *scaling*; Pillow's own convert
    clips everything above 255 to white. A tRNS colour key becomes an alpha channel."""
    import numpy as np

    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        scale = 255.0 / 65535.0
    elif img.mode == "F":
        scale = 255.0 if arr.size and float(arr.max()) <= 1.0 else 1.0
    else:  # "I": bit depth unknown; 16-bit sources are by far the most common
        scale = 255.0 / 65535.0 if arr.size and int(arr.max()) > 255 else 1.0
    grey = np.clip(np.rint(arr.astype(np.float32) * scale), 0, 255).astype(np.uint8)
    key = img.info.get("transparency")
    if isinstance(key, int) and not isinstance(key, bool):
        alpha = np.where(arr == key, 0, 255).astype(np.uint8)
        return Image.merge("LA", (Image.fromarray(grey), Image.fromarray(alpha))).convert("RGBA")
    return Image.fromarray(grey)


_SRGB = ImageCms.createProfile("sRGB")


@lru_cache(maxsize=32)
def _icc_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """Transform from an embedded profile to sRGB, or None when it is sRGB already or unusable.

    Cached: photo collections repeat the same few camera profiles thousands of times.
    """
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if mode == "RGB" and "srgb" in ImageCms.getProfileDescription(src).lower():
            return None  # already what the model assumes; skip the per-pixel work
        return ImageCms.buildTransform(src, _SRGB, mode, "RGB")
    except Exception:  # broken, truncated or mismatched profile: plain conversion instead
        return None


def _to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    """Alpha onto white, then any colour space (embedded ICC, CMYK, LAB, grey) to RGB."""
    if img.mode in ("RGBA", "LA"):
        rgba = img.convert("RGBA")
        base = Image.new("RGB", rgba.size, (255, 255, 255))
        base.paste(rgba, mask=rgba.getchannel("A"))
        img = base
    if icc and img.mode in ("RGB", "CMYK", "L"):
        transform = _icc_transform(icc, img.mode)
        if transform is not None:
            try:
                return ImageCms.applyTransform(img, transform)
            except Exception:
                pass  # fall through to the plain conversion
    return img if img.mode == "RGB" else img.convert("RGB")


# --- encoding -------------------------------------------------------------------------------


def _jpeg_bytes(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    # optimize/progressive off: they cost CPU for a few % of bytes nobody stores. 4:2:0 chroma.
    img.save(buf, "JPEG", quality=quality, subsampling=2, optimize=False)
    return buf.getvalue()


def _encode_within(img: Image.Image, quality: int, max_bytes: int) -> tuple[bytes, Image.Image]:
    """JPEG under max_bytes: lower the quality first, then shrink the image."""
    q = quality
    while True:
        data = _jpeg_bytes(img, q)
        if len(data) <= max_bytes:
            return data, img
        if q - _QUALITY_STEP >= _MIN_QUALITY:
            q -= _QUALITY_STEP
            continue
        w, h = img.size
        if max(w, h) <= 16:
            raise _Reject("failed", "unsupported", f"unsupported: cannot encode under the {max_bytes:,}-byte budget")
        img = img.resize((max(1, w * 3 // 4), max(1, h * 3 // 4)), _RESAMPLE)


# --- the worker function --------------------------------------------------------------------


def prepare(req: PrepareRequest) -> ImageReport:
    """Read, check, decode, orient, convert, resize and (optionally) encode one image.

    Never raises. Top-level and picklable, so it can run in a process pool. Not thread-safe
    (it sets Pillow's global bomb limit for the duration of the call): use processes.
    """
    report = ImageReport(path=req.path, status="failed")
    try:
        _prepare_into(req, report)
    except _Reject as rej:
        report.status, report.reason_code, report.reason = rej.status, rej.code, rej.reason
    except Exception as exc:  # a decoder bug must cost one image, never the batch
        rej = _decode_failure(exc, report.format or "image", req.max_pixels)
        report.status, report.reason_code, report.reason = rej.status, rej.code, rej.reason
    if report.status != "ok":
        report.out_width = report.out_height = report.visual_tokens = None
        report.media_type, report.encoded = None, None
        if report.status == "failed":
            report.phash = report.blur = None
    return report


def prepare_batch(reqs: list[PrepareRequest]) -> list[ImageReport]:
    """`prepare` for several files in one call: one trip to a pool worker and back for all of them."""
    return [prepare(req) for req in reqs]


def _prepare_into(req: PrepareRequest, report: ImageReport) -> None:
    _ensure_plugins()
    data = _read(req.path, report)
    report.bytes = len(data)
    report.sha256 = hashlib.sha256(data).hexdigest()
    if not data:
        raise _Reject("skipped", "empty", "empty file (0 bytes)")
    # More than SNIFF_BYTES: a long HEIF 'ftyp' brand list can push "avif" past byte 64.
    fmt = sniff.sniff_format(data[:1024])
    if fmt is None:
        code, what = sniff.classify_unknown(data[:512])
        prefix = "not an image" if code == "not_image" else "unsupported"
        raise _Reject("skipped", code, f"{prefix}: {what}")
    report.format = fmt
    _precheck(data, fmt, req.max_pixels)

    # Decoder exceptions propagate to prepare(), which turns them into a reason.
    with _pillow_guard(req.max_pixels):
        _decode_and_finish(data, fmt, req, report)


def _decode_and_finish(data: bytes, fmt: str, req: PrepareRequest, report: ImageReport) -> None:
    img, icc, orientation = _decode(data, fmt, req, report)
    assert report.width is not None and report.height is not None
    too_small = min(report.width, report.height) < req.min_short_side
    out_w, out_h = fit_size(report.width, report.height, req.tier, req.max_long_edge, req.min_short_side)
    will_encode = req.encode and not too_small
    # The source itself can go (jpegpass.py): a JPEG already at the size to send, upright, in sRGB.
    as_is = (will_encode and report.format == "JPEG" and orientation == 1 and img.mode == "RGB"
             and img.size == (report.width, report.height) == (out_w, out_h)
             and (icc is None or _icc_transform(icc, "RGB") is None))

    img = _to_srgb(img, icc)
    if will_encode and img.size != (out_w, out_h):
        img = img.resize((out_w, out_h), _RESAMPLE)

    if req.want_hashes:
        # Imported here, in the decode workers (the forkserver preloads it): the main process, which imports this
        # module for its types and its pool, must not pay for numpy and scipy (about 0.6 s) before it can ask.
        from imgtag.ingest.prefilter import analysis_thumbnail, blur_score, phash_hex

        # From the already reduced image: no second decode, and only a few hundred px to hash.
        thumb = analysis_thumbnail(img)
        report.phash = phash_hex(thumb)
        report.blur = round(blur_score(thumb), 2)

    if too_small:
        raise _Reject(
            "skipped",
            "too_small",
            f"too small: {report.width}x{report.height} px (short side under {req.min_short_side} px; "
            "use --min-side 0 to tag anyway)",
        )

    report.status = "ok"
    sent = jpegpass.stripped(data) if as_is else None
    if sent is not None and len(sent) <= req.max_bytes and len(sent) * 8 <= PASS_BITS_PER_PIXEL * out_w * out_h:
        report.encoded, report.media_type = sent, MEDIA_TYPE
    elif will_encode:
        report.encoded, img = _encode_within(img, req.jpeg_quality, req.max_bytes)
        report.media_type = MEDIA_TYPE
        out_w, out_h = img.size
    report.out_width, report.out_height = out_w, out_h
    report.visual_tokens = visual_tokens(out_w, out_h, req.tier.patch)


def _decode(data: bytes, fmt: str, req: PrepareRequest,
            report: ImageReport) -> tuple[Image.Image, bytes | None, int]:
    """Decode the first frame, as small as the job allows, and turn it upright.

    Returns the oriented image (any reducible mode, at least the needed size unless the source
    is smaller), its embedded ICC profile and the EXIF orientation it was turned by (1: none).
    Sets report.format/width/height.
    """
    im = Image.open(io.BytesIO(data), formats=_open_formats(fmt))
    if im.format == "MPO":
        report.format = "MPO"
    w0, h0 = im.size
    if w0 <= 0 or h0 <= 0:
        raise _Reject("failed", "corrupt", f"corrupt: {fmt} declares an empty {w0}x{h0} image")
    if w0 * h0 > req.max_pixels:
        raise _bomb(w0, h0, req.max_pixels)
    icc = im.info.get("icc_profile") or None

    # Smallest size the rest of the pipeline needs. fit_size is symmetric in (w, h), so this is
    # right in the stored frame whatever the orientation turns out to be.
    if req.encode and min(w0, h0) >= req.min_short_side:
        need = fit_size(w0, h0, req.tier, req.max_long_edge, req.min_short_side)
    elif req.want_hashes:
        from imgtag.ingest.prefilter import ANALYSIS_EDGE

        need = _scaled_size(w0, h0, ANALYSIS_EDGE)
    else:
        need = _scaled_size(w0, h0, 64)  # scan without hashes: just prove the pixels decode

    if im.format in ("JPEG", "MPO"):
        # DCT-domain downscaling in libjpeg: decodes 1/2, 1/4 or 1/8 of the pixels, still >= need.
        im.draft("RGB", need)
    im.load()
    # After load: PNG may keep EXIF after the pixel data, and reading it first would trip over
    # (and then hide) truncation.
    orientation = _orientation(im)
    # Reported size is the *original* size turned upright, not the drafted one.
    swap = orientation in (5, 6, 7, 8)
    report.width, report.height = (h0, w0) if swap else (w0, h0)

    img = _to_reducible(im)
    # Integer box reduction to within 2x of the target: cheap, and leaves the final high-quality
    # resample only a small ratio to cover. One factor for both axes keeps the aspect ratio for
    # the hashes even when no final resize follows (scan mode).
    k = max(1, min(int(img.width / need[0] / 2), int(img.height / need[1] / 2)))
    if k > 1:
        img = img.reduce(k)
    if orientation in _TRANSPOSE:
        img = img.transpose(_TRANSPOSE[orientation])
    return img, icc, orientation


# --- the pool -------------------------------------------------------------------------------


def _usable_cpus() -> int:
    """CPUs this process may run on (respects taskset/affinity, unlike os.cpu_count)."""
    if hasattr(os, "sched_getaffinity"):
        with contextlib.suppress(OSError):
            return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _mp_context() -> multiprocessing.context.BaseContext:
    """forkserver where available (fork-safe even if the caller runs threads, and the server
    preloads Pillow once so new workers start fast); spawn elsewhere."""
    lifeline.mark_main_process()
    lifeline.quiet_resource_tracker()
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        with contextlib.suppress(Exception):
            # forkserver_init first: the forkserver dies with us and ignores Ctrl-C before the slow imports
            ctx.set_forkserver_preload(["imgtag.ingest.forkserver_init", "imgtag.ingest.preprocess",
                                        "imgtag.ingest.prefilter"])
        from multiprocessing import forkserver, resource_tracker

        # The forkserver ignores SIGINT only once its preload list is imported: a Ctrl-C at the terminal in that
        # second printed a KeyboardInterrupt traceback. Started with SIGINT blocked, it never sees one (nor do its
        # decode workers). The resource tracker first: starting it unblocks SIGINT in the calling thread.
        resource_tracker.ensure_running()
        with lifeline.interrupts_held():
            forkserver.ensure_running()
        return ctx
    return multiprocessing.get_context("spawn")


def new_pool(workers: int) -> ProcessPoolExecutor:
    """A decode pool: never forked from a process holding locks or SQLite handles; one codec thread each."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context(), initializer=init_worker)


def _crashed(req: PrepareRequest) -> ImageReport:
    return ImageReport(
        path=req.path,
        status="failed",
        reason_code="corrupt",
        reason="corrupt: decoder crashed (worker process died)",
    )


def run_isolated(reqs: list[PrepareRequest]) -> Iterator[ImageReport]:
    """Re-run the requests that were in flight when the pool died, one at a time in a private
    single-worker pool, so only the file that really kills the decoder is blamed."""
    pool: ProcessPoolExecutor | None = None
    try:
        for req in reqs:
            if pool is None:
                pool = new_pool(1)
            try:
                report = pool.submit(prepare, req).result()
            except BrokenProcessPool:
                pool.shutdown(wait=True, cancel_futures=True)
                pool = None
                report = _crashed(req)
            yield report
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def prepare_many(
    reqs: Iterable[PrepareRequest], workers: int | None = None, max_pending: int | None = None
) -> Iterator[ImageReport]:
    """`prepare` over a process pool; yields one report per request, in completion order.

    Bounded: at most max_pending (default 2 * workers) requests are submitted but not yet
    yielded, and the input iterable is consumed only as fast as results are, so memory stays
    flat for any number of files. A worker crash (segfault, OOM kill) costs only the file that
    caused it: the pool is rebuilt and the other in-flight files are retried.
    """
    n_workers = workers or _usable_cpus()
    limit = max(1, max_pending or 2 * n_workers)
    if n_workers == 1:
        # In-process: no pickling or start-up cost; nothing to bound since we go one by one.
        for req in reqs:
            yield prepare(req)
        return

    source = iter(reqs)
    exhausted = False
    pool = new_pool(n_workers)
    pending: dict[Future[ImageReport], PrepareRequest] = {}
    try:
        while True:
            if not exhausted:
                room = limit - len(pending)
                for req in islice(source, room):
                    try:
                        fut = pool.submit(prepare, req)
                    except BrokenProcessPool:
                        # A worker died while idle. Its pool's pending futures fail and are
                        # retried below; new work goes to a fresh pool.
                        pool = new_pool(n_workers)
                        fut = pool.submit(prepare, req)
                    pending[fut] = req
                    room -= 1
                exhausted = room > 0  # the source ran dry before filling the window
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            orphans: list[PrepareRequest] = []
            for fut in done:
                req = pending.pop(fut)
                try:
                    report = fut.result()
                except BrokenProcessPool:
                    orphans.append(req)
                    continue
                except Exception as exc:  # e.g. an unpicklable result: still one report per file
                    report = ImageReport(
                        path=req.path,
                        status="failed",
                        reason_code="corrupt",
                        reason=_one_line(f"corrupt: worker error ({type(exc).__name__}: {exc})"),
                    )
                yield report
            if orphans:
                # The pool is dead: every future still pending will fail the same way.
                orphans.extend(pending.values())
                pending.clear()
                pool.shutdown(wait=True, cancel_futures=True)
                yield from run_isolated(orphans)
                pool = new_pool(n_workers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
