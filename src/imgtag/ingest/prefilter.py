"""Local, free checks before any paid request: blur score, perceptual hash, duplicate indexes.

Everything here works on a small greyscale "analysis thumbnail" so that scores do not depend on
the resolution a file happens to have, and so the hot loop pays for it only once per image.
"""

from __future__ import annotations

import contextlib

import imagehash
import numpy as np
from PIL import Image

# The duplicate indexes need none of the imaging libraries: the main process imports them from there.
from imgtag.ingest.duplicates import ExactDuplicateIndex, NearDuplicateIndex, hamming  # noqa: F401

# imagehash imports scipy.fftpack lazily on the first phash (~0.2 s). Import it now, so pool
# workers forked from a preloaded server start warm instead of each paying it on image one.
with contextlib.suppress(ImportError):
    import scipy.fftpack  # noqa: F401

# Long edge of the analysis thumbnail. Blur is measured at (at most) this scale, roughly the
# detail a model sees after the provider resize, so a 24 MP photo and its 1 MP copy score alike.
ANALYSIS_EDGE = 512

# Calibrated on the 88 corpus photos (tests/test_prefilter.py): real photos score 24 (a soft
# phone shot of jeans) to 12,000, median ~300; the same photos under a Gaussian blur of 2 px at
# thumbnail scale score 2-21. Flat product shots score low without being blurred, so this is a
# hint for reports, never a reason to skip an image.
BLURRY_BELOW = 25.0

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


def analysis_thumbnail(img: Image.Image) -> Image.Image:
    """Greyscale copy with the long edge at most ANALYSIS_EDGE; transparency composited on white.

    Cheap when given an already-reduced image (as preprocess does); never upscales, because
    interpolated pixels would read as blur.
    """
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        arr = np.asarray(img, dtype=np.float64)
        top = float(arr.max()) if arr.size else 0.0
        scale = 255.0 / 65535.0 if img.mode.startswith("I;16") or top > 255 else 1.0
        if img.mode == "F" and top <= 1.0:
            scale = 255.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8))
    grey = img if img.mode == "L" else img.convert("L")
    w, h = grey.size
    if max(w, h) > ANALYSIS_EDGE:
        s = ANALYSIS_EDGE / max(w, h)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        # Box-reduce then bilinear: a fraction of LANCZOS's cost, and smooth enough that the
        # Laplacian measures the picture rather than resampling artefacts.
        grey = grey.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return grey


def blur_score(img: Image.Image) -> float:
    """Sharpness: variance of the Laplacian of the analysis thumbnail. Higher = sharper.

    Flat or tiny images score 0. Compare against BLURRY_BELOW.
    """
    thumb = analysis_thumbnail(img)
    # Integers throughout: the Laplacian of 8-bit pixels lies in -1020..1020, so int16 holds it exactly, and the
    # variance comes from exact int64 sums. The float32 version took 0.6-0.8 ms of a decode worker's 2.1 ms per
    # 320x240 image (its five full-size float temporaries each a fresh allocation), this one 0.1 ms.
    a = np.asarray(thumb, dtype=np.int16)
    if a.ndim != 2 or a.shape[0] < 3 or a.shape[1] < 3:
        return 0.0
    lap = (a[1:-1, :-2] + a[1:-1, 2:] + a[:-2, 1:-1] + a[2:, 1:-1] - 4 * a[1:-1, 1:-1]).ravel()
    n = lap.size
    total = int(lap.sum(dtype=np.int64))
    squares = int(np.einsum("i,i->", lap, lap, dtype=np.int64))
    return (n * squares - total * total) / (n * n)


def phash_hex(img: Image.Image) -> str:
    """64-bit DCT perceptual hash (imagehash.phash) as 16 hex characters."""
    return str(imagehash.phash(analysis_thumbnail(img)))
