"""A JPEG that needs no change is sent as its own coded bytes, with its metadata segments cut out.

When the source is already what the model should see (the size fit_size picks, upright, sRGB, a plain
Huffman-coded baseline JPEG), re-encoding it only costs CPU (about a quarter of a decode worker's time on small
photos) and adds a second generation of JPEG loss. What it must not send is what re-encoding dropped: EXIF (GPS,
camera serials), XMP, IPTC, ICC, MPF and comments. Those live in their own segments before the first scan, so they
are cut; the frame, tables and coded data are kept byte for byte. APP0 (JFIF) and APP14 (Adobe: says whether the
three components are YCbCr or RGB) carry no personal data and change how the pixels decode, so they stay.
"""

from __future__ import annotations

SOI, EOI = b"\xff\xd8", b"\xff\xd9"
_SOS = 0xDA
_KEEP_APP = (0xE0, 0xEE)  # APP0 JFIF, APP14 Adobe
_SOF_PLAIN = (0xC0, 0xC1)  # baseline and extended sequential, Huffman-coded: what every API decodes
_STANDALONE = (0x01, 0xD8, 0xD9, *range(0xD0, 0xD8))


def stripped(data: bytes) -> bytes | None:
    """`data` without its metadata segments, or None when it is not the plain layout this handles: another coding
    process (progressive, arithmetic, lossless, hierarchical), junk between segments, or anything after the
    image's end (an appended picture or video)."""
    if not data.startswith(SOI):
        return None
    out = [SOI]
    frame = False
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF or data[i + 1] in _STANDALONE or data[i + 1] == 0xFF:
            return None
        marker = data[i + 1]
        if marker == _SOS:
            # Coded data from here: in it 0xFF is always followed by 0x00 or a restart marker, so the first
            # FFD9 is the image's end, and it must be the file's end too.
            if not frame or data.find(EOI, i) != n - 2:
                return None
            out.append(data[i:])
            return b"".join(out)
        end = i + 2 + int.from_bytes(data[i + 2:i + 4], "big")
        if end < i + 4 or end > n:
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if marker not in _SOF_PLAIN or frame:
                return None
            frame = True
        elif marker == 0xCC:  # arithmetic-coding conditioning
            return None
        if not (0xE0 <= marker <= 0xEF and marker not in _KEEP_APP) and marker != 0xFE:  # APPn, COM: cut
            out.append(data[i:end])
        i = end
    return None
