"""Fitting an image into what the tag API accepts: JPEG, PNG or WebP, at most 4 MB.

The documentation says "4MB" without saying whether it counts the file or the base64 text, or MB or MiB,
so the base64 data URL itself is kept under 4,000,000 characters: within the limit under every reading.
The ingest stage already sends a JPEG sized for vision models (long edge 1568 px), which is normally far
below this; the re-encode here is for the exceptions, and for the one retry after an "invalid image
format" answer (a plain baseline JPEG with no metadata is the most widely accepted file there is).
"""

from __future__ import annotations

import base64
import io

from PIL import Image

from imgtag.providers.base import ImageInput

MAX_DATA_URL_CHARS = 4_000_000
ACCEPTED_TYPES = ("image/jpeg", "image/png", "image/webp")
QUALITIES = (85, 75, 65, 50)
SHRINK = 0.75


class EncodeError(Exception):
    """The image cannot be decoded or brought under the limit."""


def data_url(image: ImageInput) -> str:
    return f"data:{image.media_type};base64,{base64.b64encode(image.data).decode('ascii')}"


def data_url_chars(byte_count: int, media_type: str) -> int:
    return len(f"data:{media_type};base64,") + 4 * ((byte_count + 2) // 3)


def fits(image: ImageInput) -> bool:
    return image.media_type in ACCEPTED_TYPES and data_url_chars(len(image.data), image.media_type) <= \
        MAX_DATA_URL_CHARS


def reencode(image: ImageInput, *, limit: int = MAX_DATA_URL_CHARS) -> ImageInput:
    """A fresh baseline JPEG (no metadata) under `limit` data-URL characters: lower quality first, then
    smaller. Runs in a worker thread (CPU-bound, rare)."""
    try:
        with Image.open(io.BytesIO(image.data)) as im:
            im.load()
            rgb = im.convert("RGB") if im.mode != "RGB" else im.copy()
    except Exception as exc:  # Pillow raises many types for bad data
        raise EncodeError(f"cannot decode the image to re-encode it: {exc}") from None
    while True:
        for quality in QUALITIES:
            buf = io.BytesIO()
            rgb.save(buf, "JPEG", quality=quality, optimize=False, progressive=False)
            data = buf.getvalue()
            if data_url_chars(len(data), "image/jpeg") <= limit:
                return ImageInput(data, "image/jpeg")
        w, h = rgb.size
        if min(w, h) < 64:
            raise EncodeError(f"cannot encode the image under {limit:,} characters")
        rgb = rgb.resize((max(1, int(w * SHRINK)), max(1, int(h * SHRINK))), Image.Resampling.LANCZOS)
