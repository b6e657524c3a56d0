"""Identify image formats by content (magic bytes), never by file extension, and read the few
header facts we need *before* handing a file to a decoder.

File extensions lie (text files named .jpg, APNG behind .png, HEIC renamed .jpg by phones), so
every decision is made from the bytes. The header readers here are deliberately tiny and
defensive: they only look at declared sizes and codec parameters so that decompression bombs
and formats the decoder cannot handle get a precise one-line reason without decoding anything.
All functions accept arbitrary bytes and never raise.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

# How many leading bytes sniff_format needs (discovery reads only this much).
SNIFF_BYTES = 64

# Formats sniff_format can return; all are decodable by Pillow (+ pillow-heif for HEIF).
IMAGE_FORMATS = frozenset(
    {"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF", "AVIF", "JPEG2000", "ICO", "PSD", "QOI"}
)

_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
# Generic HEIF-family brands: the compatible-brand list says whether it is AVIF or HEIC.
_MIAF_BRANDS = frozenset({b"mif1", b"msf1", b"mif2", b"miaf"})
# BMP info-header sizes that exist in the wild (core, OS/2 v2, v3..v5).
_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


def _ftyp_brands(head: bytes) -> list[bytes]:
    """Major + compatible brands of an ISO-BMFF 'ftyp' box at offset 0, or []."""
    if len(head) < 12 or head[4:8] != b"ftyp":
        return []
    box_size = struct.unpack(">I", head[:4])[0]
    end = min(len(head), box_size if box_size >= 16 else 16)
    brands = [head[8:12]]
    brands += [head[i : i + 4] for i in range(16, end - 3, 4)]
    return brands


def sniff_format(head: bytes) -> str | None:
    """Container format from the first bytes of a file, or None if it is not a known image.

    Returns one of IMAGE_FORMATS. MPO (multi-picture JPEG) is JPEG on the wire and is reported
    as "JPEG" here; the decoder tells the two apart.
    """
    if len(head) < 4:
        return None
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or head[:4] == b"\xff\x4f\xff\x51":
        return "JPEG2000"
    brands = _ftyp_brands(head)
    if brands:
        major = brands[0]
        if major in _AVIF_BRANDS:
            return "AVIF"
        if major in _HEIF_BRANDS:
            return "HEIF"
        if major in _MIAF_BRANDS:
            if _AVIF_BRANDS.intersection(brands[1:]):
                return "AVIF"
            return "HEIF"
        return None  # MP4/QuickTime/CR3 and friends
    if head[:2] == b"BM" and len(head) >= 18:
        if struct.unpack("<I", head[14:18])[0] in _BMP_DIB_SIZES:
            return "BMP"
        return None
    if head[:4] == b"\x00\x00\x01\x00" and len(head) >= 6 and struct.unpack("<H", head[4:6])[0] > 0:
        return "ICO"
    if head[:4] == b"8BPS":
        return "PSD"
    if head[:4] == b"qoif":
        return "QOI"
    return None


def classify_unknown(head: bytes) -> tuple[str, str]:
    """For content sniff_format did not recognise: (reason_code, what it looks like).

    reason_code is "unsupported" for images we recognise but cannot decode (SVG, JPEG XL, video
    containers) and "not_image" for everything else. The description is short and human.
    """
    if not head:
        return "not_image", "empty"
    if head[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n" or head[:2] == b"\xff\x0a":
        return "unsupported", "JPEG XL image (no decoder available)"
    if _ftyp_brands(head):
        major = head[8:12]
        if major in (b"crx ",):
            return "unsupported", "Canon CR3 raw image (no decoder available)"
        return "not_image", "looks like a video (MP4/QuickTime container)"
    if head[:5] == b"%PDF-":
        return "not_image", "looks like a PDF document"
    if head[:4] == b"PK\x03\x04":
        return "not_image", "looks like a ZIP archive (or Office document)"
    text = _as_text(head)
    if text is not None:
        low = text.lstrip("\ufeff \t\r\n").lower()
        if low.startswith("<svg") or ("<svg" in low and low.startswith("<?xml")):
            return "unsupported", "SVG vector image (rasterise it first)"
        if low.startswith(("<!doctype html", "<html")):
            return "not_image", "looks like HTML"
        if low.startswith("<?xml"):
            return "not_image", "looks like XML"
        if low.startswith(("{", "[")):
            return "not_image", "looks like JSON/text"
        return "not_image", "looks like text"
    return "not_image", "unknown binary data"


def _as_text(head: bytes) -> str | None:
    """Decode head as text if it plausibly is text (UTF-8/UTF-16 with a BOM), else None."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return head.decode("utf-16")
        except UnicodeDecodeError:
            return None
    if b"\x00" in head:
        return None
    # The head may end in the middle of a multi-byte character: drop up to 3 trailing bytes.
    for cut in range(4):
        try:
            text = head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        printable = sum(ch.isprintable() or ch in "\t\r\n\f" for ch in text)
        return text if printable >= 0.95 * max(1, len(text)) else None
    return None


# --- header facts -------------------------------------------------------------------------


@dataclass(frozen=True)
class JpegFrame:
    """The JPEG start-of-frame segment: coding process, sample precision and size."""

    marker: int  # 0xC0..0xCF (SOF0 baseline, SOF1 extended, SOF2 progressive, SOF3 lossless, ...)
    precision: int  # bits per sample: 8 for ordinary JPEGs, 12 or 16 for medical/HDR ones
    width: int
    height: int
    components: int

    @property
    def lossless(self) -> bool:
        return self.marker in (0xC3, 0xC7, 0xCB, 0xCF)

    @property
    def arithmetic(self) -> bool:
        return self.marker >= 0xC9


def jpeg_frame(data: bytes) -> JpegFrame | None:
    """Parse the first SOF segment of a JPEG by walking its markers, or None."""
    n = len(data)
    i = 2
    while i + 4 <= n:
        if data[i] != 0xFF:
            # Junk between segments (seen in the wild): resynchronise on the next marker.
            nxt = data.find(b"\xff", i)
            if nxt < 0:
                return None
            i = nxt
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # EOI / start of scan: no frame header before the data
            return None
        seg_len = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 10 > n:
                return None
            precision, height, width, comps = struct.unpack(">BHHB", data[i + 4 : i + 10])
            return JpegFrame(marker, precision, width, height, comps)
        if seg_len < 2:
            return None
        i += 2 + seg_len
    return None


def bmp_compression(data: bytes) -> int | None:
    """The BMP compression field (0 = none, 4 = embedded JPEG, 5 = embedded PNG), or None."""
    if len(data) < 34 or data[:2] != b"BM":
        return None
    if struct.unpack("<I", data[14:18])[0] < 40:  # OS/2 core header has no compression field
        return 0
    return int(struct.unpack("<I", data[30:34])[0])


def declared_size(data: bytes, fmt: str | None) -> tuple[int, int] | None:
    """The largest canvas a file *declares*, read from headers without decoding.

    Used to refuse decompression bombs (a few KB declaring gigapixels) with a precise reason
    before any decoder allocates memory. Returns None when the format is not covered or the
    header is unreadable; the decoder's own limit is the safety net then.
    """
    try:
        reader = _SIZE_READERS.get(fmt or "")
        return reader(data) if reader else None
    except (struct.error, IndexError, ValueError):
        return None


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", data[16:24])
    return int(w), int(h)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    frame = jpeg_frame(data)
    return (frame.width, frame.height) if frame else None


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 26:
        return None
    if struct.unpack("<I", data[14:18])[0] == 12:
        w, h = struct.unpack("<HH", data[18:22])
    else:
        w, h = struct.unpack("<ii", data[18:26])
    return abs(int(w)), abs(int(h))  # negative height means top-down rows


def _gif_size(data: bytes) -> tuple[int, int] | None:
    """Logical screen size grown by every frame's extents (decoders allocate the union)."""
    if len(data) < 13:
        return None
    w, h, flags = struct.unpack("<HHB", data[6:11])
    i = 13 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0)
    n = len(data)

    def skip_sub_blocks(j: int) -> int:
        while j < n and data[j]:
            j += data[j] + 1
        return j + 1

    while i < n:
        block = data[i]
        if block == 0x2C:  # image descriptor
            if i + 10 > n:
                break
            x0, y0, fw, fh, fflags = struct.unpack("<HHHHB", data[i + 1 : i + 10])
            w, h = max(w, x0 + fw), max(h, y0 + fh)
            i += 10
            if fflags & 0x80:
                i += 3 * (2 << (fflags & 7))
            i = skip_sub_blocks(i + 1)  # LZW minimum code size, then data sub-blocks
        elif block == 0x21:  # extension: label, then sub-blocks
            i = skip_sub_blocks(i + 2)
        else:  # 0x3B trailer, or garbage: stop
            break
    return int(w), int(h)


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30:
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


def _iter_boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload_start, payload_end) of the ISO-BMFF boxes in data[start:end]."""
    i = start
    while i + 8 <= end:
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        header = 8
        if size == 1 and i + 16 <= end:
            size = struct.unpack(">Q", data[i + 8 : i + 16])[0]
            header = 16
        elif size == 0:
            size = end - i
        if size < header:
            return
        yield kind, i + header, min(end, i + size)
        i += size


def _heif_size(data: bytes) -> tuple[int, int] | None:
    """Largest 'ispe' (image spatial extents) property in meta/iprp/ipco.

    A grid image declares its full size in one ispe and its tiles in others; the maximum is the
    size the decoder would have to allocate. Boxes are walked properly (not searched for) so
    compressed bytes that happen to spell "ispe" cannot fake a size.
    """
    best: tuple[int, int] | None = None
    for kind, start, end in _iter_boxes(data, 0, len(data)):
        if kind != b"meta":
            continue
        for kind2, start2, end2 in _iter_boxes(data, start + 4, end):  # meta is a full box
            if kind2 != b"iprp":
                continue
            for kind3, start3, end3 in _iter_boxes(data, start2, end2):
                if kind3 != b"ipco":
                    continue
                for kind4, start4, end4 in _iter_boxes(data, start3, end3):
                    if kind4 == b"ispe" and end4 - start4 >= 12:
                        w, h = struct.unpack(">II", data[start4 + 4 : start4 + 12])
                        if best is None or w * h > best[0] * best[1]:
                            best = (int(w), int(h))
        break
    return best


def _ico_size(data: bytes) -> tuple[int, int] | None:
    """Largest embedded image: the directory's sizes are hints, the embedded headers decide."""
    if len(data) < 6:
        return None
    count = struct.unpack("<H", data[4:6])[0]
    best: tuple[int, int] | None = None
    for k in range(min(count, 256)):
        entry = 6 + 16 * k
        if entry + 16 > len(data):
            break
        w, h = data[entry] or 256, data[entry + 1] or 256
        offset = struct.unpack("<I", data[entry + 12 : entry + 16])[0]
        sub = data[offset : offset + 32]
        if sub[:8] == b"\x89PNG\r\n\x1a\n":
            w, h = _png_size(sub) or (w, h)
        elif len(sub) >= 12:
            bw, bh = struct.unpack("<ii", sub[4:12])
            w, h = max(w, abs(bw)), max(h, abs(bh) // 2)  # BMP height covers image + AND mask
        if best is None or w * h > best[0] * best[1]:
            best = (int(w), int(h))
    return best


_SIZE_READERS = {
    "PNG": _png_size,
    "JPEG": _jpeg_size,
    "BMP": _bmp_size,
    "GIF": _gif_size,
    "WEBP": _webp_size,
    "HEIF": _heif_size,
    "AVIF": _heif_size,
    "ICO": _ico_size,
}
