"""The `xmp-embed` format (opt-in): the same XMP written into JPEG, PNG, TIFF and WebP files, plus IPTC
keywords and caption (coded character set UTF-8, so Chinese survives) in JPEG and TIFF, through exiftool.

This is the only format that changes originals, so each file is handled as carefully as we can:
  1. it must still be the file that was tagged (size and mtime as the store has them);
  2. exiftool edits a byte copy in the same folder; pixels are never decoded or re-encoded;
  3. the copy is read back (keywords, title, description, IPTC) and its image size checked;
  4. it gets the original's mode, owner and (unless --xmp-touch) times, is fsynced, and renamed over
     the original only if the original did not change meanwhile.
Any failure leaves the original byte-identical; it is recorded per image in the store and reported.
The store is then told the file's new size and mtime, so the next run still knows it as the same image
(same sha256, same paid result) instead of paying for it again.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from imgtag.export.atomic import _fsync_dir
from imgtag.export.exiftool import Exiftool, ExiftoolError, find_exiftool, missing_exiftool
from imgtag.export.rows import ExportContext, ResultRow
from imgtag.export.xmp_doc import XmpError, failed_note, kept_note, merge, parse, summary_of
from imgtag.export.xmp_map import XmpValues, rows_with_values

KIND = "embedded"
IPTC_KEYWORDS = "IPTC:Keywords"
# IPTC IIM limits, in bytes: exiftool would refuse longer values rather than cut them.
IPTC_KEYWORD_BYTES = 64
IPTC_CAPTION_BYTES = 2000
_EXAMPLES = 3

# Formats exiftool writes XMP into, by their first bytes; IPTC only where it is standard (PNG and WebP
# have no standard IPTC block, and exiftool either warns or silently skips it there).
_FORMATS: list[tuple[bytes, int, str, bool]] = [
    (b"\xff\xd8\xff", 0, "JPEG", True),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG", False),
    (b"II*\x00", 0, "TIFF", True),
    (b"MM\x00*", 0, "TIFF", True),
    (b"WEBP", 8, "WebP", False),
]


class EmbedError(Exception):
    """One image could not be embedded into; the message is one line for the user."""


def exiftool_available() -> bool:
    return find_exiftool() is not None


def missing_exiftool_message() -> str:
    return missing_exiftool()


def write_xmp_embed(rows: Iterable[ResultRow], ctx: ExportContext) -> list[Path]:
    """Embed XMP (and IPTC where standard) into every ok image; returns the files changed or confirmed."""
    ledger = ctx.xmp_ledger
    written: list[Path] = []
    failed: list[tuple[str, str]] = []
    changed = 0
    kept: Counter[str] = Counter()
    kept_in = 0
    et: Exiftool | None = None
    try:
        for row, values in rows_with_values(rows, ctx.preset):
            if et is None:
                try:
                    et = Exiftool()
                except (ExiftoolError, OSError):
                    # The CLI checks before a run starts; if exiftool went missing since, the paid
                    # results are safe in the store and every other format is still written.
                    ctx.notes.append(f"xmp-embed: nothing embedded: {missing_exiftool_message()}")
                    break
            source = row.source_path
            try:
                previous = ledger.owned(source, KIND) if ledger is not None else {}
                owned, did_change, kept_here = _embed_one(et, source, values, ctx, previous)
            except (EmbedError, ExiftoolError, XmpError, OSError) as exc:
                reason = _reason(exc)
                failed.append((row.path, reason))
                ctx.unwritten.append(row.path)
                if ledger is not None:
                    ledger.record_failure(source, KIND, source, reason)
                if isinstance(exc, ExiftoolError) and "stopped" in str(exc):
                    et.close()
                    et = None  # start a fresh one for the next image
                continue
            changed += did_change
            kept.update(kept_here)
            kept_in += bool(kept_here)
            if ledger is not None:
                ledger.record_ok(source, KIND, source, owned)
            written.append(Path(source))
    finally:
        if et is not None:
            et.close()
    if written:
        ctx.notes.append(f"xmp-embed: metadata in {len(written)} image(s) ({changed} changed, "
                         f"{len(written) - changed} already up to date)")
    if failed:
        ctx.notes.append(failed_note("xmp-embed", failed, "image(s) left unchanged", _EXAMPLES))
    if note := kept_note("xmp-embed", kept, kept_in, "image"):
        ctx.notes.append(note)
    return written


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _sniff(path: str) -> tuple[str, bool]:
    with open(path, "rb") as f:
        head = f.read(16)
    for magic, offset, name, iptc in _FORMATS:
        if head[offset: offset + len(magic)] == magic and (name != "WebP" or head[:4] == b"RIFF"):
            return name, iptc
    raise EmbedError("not JPEG, PNG, TIFF or WebP (only those can take embedded XMP); use --format xmp")


def _embed_one(et: Exiftool, source: str, values: XmpValues, ctx: ExportContext,
               previous: dict[str, list[str]]) -> tuple[dict[str, list[str]], bool, set[str]]:
    """(what imgtag owns in the file now, whether the file changed, the texts of the user's that were kept)."""
    fmt, with_iptc = _sniff(source)
    st = os.stat(source)
    ledger = ctx.xmp_ledger
    if ledger is not None:
        known = ledger.file_state(source)
        if known is not None and known != (st.st_size, st.st_mtime_ns):
            raise EmbedError("the file changed since it was tagged (run imgtag on it again first)")

    current = et.read_json(source, ["-XMP-dc:all", "-XMP-lr:all", "-XMP-iptcCore:all", "-IPTC:Keywords",
                                    "-IPTC:Caption-Abstract", "-IPTC:CodedCharacterSet"])
    packet = et.read_xmp_packet(source)
    result = merge(packet, values, lang=ctx.lang, previous=previous, declaration=False,
                   overwrite_text=ctx.xmp_overwrite_text)
    owned = dict(result.owned)
    kept = set(result.kept)

    keywords = caption = None
    if with_iptc:
        subject = summary_of(result.data).get("dc:subject", [])
        keywords, owned_iptc = _iptc_keywords(_as_list(current.get(IPTC_KEYWORDS)), subject,
                                              set(previous.get(IPTC_KEYWORDS, [])))
        if owned_iptc:
            owned[IPTC_KEYWORDS] = owned_iptc
        caption = _caption(result.owned.get("dc:description"), current.get("IPTC:Caption-Abstract"),
                           previous.get("dc:description", []), ctx.xmp_overwrite_text)
        if caption is None and "dc:description" in result.owned:
            kept.add("dc:description")  # the user's IPTC caption (older tools write only that one)

    if _up_to_date(packet, result.data, current, keywords, caption):
        return owned, False, kept

    folder = os.path.dirname(source)
    # Same folder (os.replace is atomic only within one filesystem), same extension (exiftool goes by it).
    name = os.path.basename(source)
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.imgtag-tmp{os.path.splitext(name)[1]}")
    scratch = tempfile.mkdtemp(prefix="imgtag-xmp-")
    try:
        shutil.copyfile(source, tmp)
        xmp_file = os.path.join(scratch, "packet.xmp")
        with open(xmp_file, "wb") as f:
            f.write(result.data)
        args: list[str | bytes] = ["-overwrite_original", "-P", f"-XMP<={xmp_file}"]
        if with_iptc and keywords is not None:
            args.append("-IPTC:CodedCharacterSet=UTF8")
            args += [f"-IPTC:Keywords={k}" for k in keywords] or ["-IPTC:Keywords="]
            if caption is not None:
                caption_file = os.path.join(scratch, "caption.txt")
                with open(caption_file, "w", encoding="utf-8", newline="") as f:
                    f.write(caption)
                args.append(f"-IPTC:Caption-Abstract<={caption_file}")
        out, err = et.execute([*args, os.path.abspath(tmp)])
        if b"1 image files updated" not in out:
            raise EmbedError(f"exiftool refused to write {fmt}: {_refusal(err, tmp)}")
        _verify(et, tmp, source, result.data, keywords, caption)
        _finish(tmp, source, st, touch=ctx.xmp_touch)
        tmp = ""
        if ledger is not None:
            new = os.stat(source)
            ledger.update_file_state(source, new.st_size, new.st_mtime_ns)
    except BaseException as exc:
        if not isinstance(exc, Exception) and et.busy:
            # Interrupted (Ctrl-C, SIGTERM) while exiftool writes the copy: let it finish first, or it would
            # rename its own temporary file to the copy's name after the copy was removed below.
            et.close()
        raise
    finally:
        if tmp:
            for name in (tmp, f"{tmp}_exiftool_tmp"):
                with contextlib.suppress(OSError):
                    os.unlink(name)
        shutil.rmtree(scratch, ignore_errors=True)
    return owned, True, kept


def _caption(ours: list[str] | None, existing: object, mine: list[str], overwrite: bool) -> str | None:
    """The IPTC caption to write: our description when we wrote it to XMP, unless the file's caption is the
    user's own (neither empty nor a text imgtag wrote); None leaves the caption as it is."""
    if not ours:
        return None
    text = _cut(ours[0], IPTC_CAPTION_BYTES)
    if overwrite or existing in (None, "", text) or existing in {_cut(t, IPTC_CAPTION_BYTES) for t in mine}:
        return text
    return None


def _iptc_keywords(existing: list[str], subject: list[str], mine: set[str]) -> tuple[list[str], list[str]]:
    """The IPTC keyword list: the user's own first, then ours; and the ones we added."""
    out: list[str] = []
    seen: set[str] = set()
    for k in existing:
        if k in mine or k.casefold() in seen:
            continue
        seen.add(k.casefold())
        out.append(k)
    added = []
    for k in subject:
        k = _cut(k, IPTC_KEYWORD_BYTES)
        if k and k.casefold() not in seen:
            seen.add(k.casefold())
            out.append(k)
            added.append(k)
    return out, added


def _cut(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore").rstrip()


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _up_to_date(packet: bytes | None, wanted: bytes, current: dict[str, Any], keywords: list[str] | None,
                caption: str | None) -> bool:
    if packet is None:
        return False
    try:
        parse(packet)
    except XmpError:
        return False
    if summary_of(packet) != summary_of(wanted):
        return False
    if keywords is not None and _as_list(current.get(IPTC_KEYWORDS)) != keywords:
        return False
    if keywords is not None and current.get("IPTC:CodedCharacterSet") != "UTF8":
        return False
    return caption is None or current.get("IPTC:Caption-Abstract") == caption


def _verify(et: Exiftool, tmp: str, source: str, wanted: bytes, keywords: list[str] | None,
            caption: str | None) -> None:
    got = et.read_json(tmp, ["-IPTC:Keywords", "-IPTC:Caption-Abstract"])
    packet = et.read_xmp_packet(tmp)
    if packet is None or summary_of(packet) != summary_of(wanted):
        raise EmbedError("read-back check failed: the XMP written is not the XMP read back")
    if keywords is not None and _as_list(got.get(IPTC_KEYWORDS)) != keywords:
        raise EmbedError("read-back check failed: IPTC keywords differ")
    if caption is not None and got.get("IPTC:Caption-Abstract") != caption:
        raise EmbedError("read-back check failed: IPTC caption differs")
    # Metadata tools never touch pixels, but a cheap header check catches a damaged container.
    from PIL import Image  # here, not at import: `imgtag --help` and configuration errors never load Pillow

    try:
        with Image.open(source) as a, Image.open(tmp) as b:
            if a.size != b.size:
                raise EmbedError("read-back check failed: image size changed")
    except OSError as exc:
        raise EmbedError(f"read-back check failed: {exc}") from None


def _finish(tmp: str, source: str, before: os.stat_result, *, touch: bool) -> None:
    os.chmod(tmp, before.st_mode & 0o7777)
    with contextlib.suppress(OSError, AttributeError):
        os.chown(tmp, before.st_uid, before.st_gid)  # only root (or the owner, for the group) can
    if not touch:
        os.utime(tmp, ns=(before.st_atime_ns, before.st_mtime_ns))
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    now = os.stat(source)
    if (now.st_size, now.st_mtime_ns, now.st_ino) != (before.st_size, before.st_mtime_ns, before.st_ino):
        raise EmbedError("the file changed while its metadata was being written; it was left as it is")
    os.replace(tmp, source)
    _fsync_dir(Path(source).parent)


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or ["no message"])[0]


def _refusal(err: str, tmp: str) -> str:
    """exiftool's error about the hidden copy it was given ("Error: Truncated IFD0 directory - /x/.a.jpg.1f2e.
    imgtag-tmp.jpg"), as a reason about the user's image: without the copy's path, which they never made."""
    line = _first_line(err).removesuffix(f" - {os.path.abspath(tmp)}")
    return line.removeprefix("Error: ")
