"""Lines that fit the terminal: what imgtag prints is wrapped at word boundaries to the terminal's width, with
continuation lines indented, as the progress line fits its segments.

The width is $COLUMNS when set (a terminal sets it; so do tests), else the terminal's own when the stream is one.
Output to a file or a pipe keeps whole lines, so it can be grepped and logged. A word longer than the line (a long
path) is kept whole on a line of its own: it must stay copyable.
"""

from __future__ import annotations

import io
import os
import re
import unicodedata
from typing import TextIO

_LEAD = re.compile(r"^ *")
_CHUNKS = re.compile(r"\S+|\s+")


def terminal_columns(stream: TextIO) -> int | None:
    """The width `stream` is shown at, or None when it is not a terminal (and COLUMNS is unset)."""
    try:
        value = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        value = 0
    if value > 0:
        return value
    try:
        if stream.isatty():
            return os.get_terminal_size(stream.fileno()).columns or None
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return None
    return None


def fit(text: str, width: int | None, indent: str = "  ") -> str:
    """Each line of `text` wrapped to `width` columns between words; a continuation line starts with the line's
    own leading spaces plus `indent` (an indent wider than half the line falls back to two spaces)."""
    if not width:
        return text
    lines: list[str] = []
    for line in text.split("\n"):
        if cells(line) <= width:
            lines.append(line)
            continue
        lead = _LEAD.match(line).group(0)  # type: ignore[union-attr]  # matches every string
        hang = lead + indent
        if len(hang) > width // 2:
            hang = lead[: width // 4] + "  "
        lines.extend(_wrap(line, width, lead, hang))
    return "\n".join(lines)


def cells(text: str) -> int:
    """The columns `text` takes on a terminal: a CJK character (East Asian wide or fullwidth) takes two, a
    combining mark none. Counting characters instead let a Chinese file name overflow the line."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
               for c in text)


def _wrap(line: str, width: int, lead: str, hang: str) -> list[str]:
    """Greedy breaks between words by display width; the spaces inside a line are kept (scan's columns), those
    at a break dropped; a word wider than the line stays whole."""
    out: list[str] = []
    cur, used, space, empty = lead, cells(lead), "", True
    for chunk in _CHUNKS.findall(line[len(lead):]):
        if chunk.isspace():
            space = chunk
            continue
        size = cells(chunk)
        if empty or used + len(space) + size <= width:
            cur, used = cur + ("" if empty else space) + chunk, used + (0 if empty else len(space)) + size
        else:
            out.append(cur)
            cur, used = hang + chunk, len(hang) + size
        space, empty = "", False
    out.append(cur)
    return out


def write_fitted(stream: TextIO, text: str, indent: str = "  ") -> None:
    """`text` and a newline to `stream`, fitted to its width."""
    stream.write(fit(text, terminal_columns(stream), indent) + "\n")


class Lines:
    """What the CLI prints to stdout or stderr: text fitted to that stream's width; anything else (a rich table,
    which fits itself) through rich. The stream is looked up at each print, so a redirected sys.stdout is used."""

    def __init__(self, err: bool = True) -> None:
        self.err = err

    @property
    def stream(self) -> TextIO:
        import sys

        return sys.stderr if self.err else sys.stdout

    def print(self, text: object = "", *, markup: bool = False, indent: str = "  ") -> None:
        if isinstance(text, str):
            write_fitted(self.stream, text, indent)
            self.stream.flush()
            return
        from rich.console import Console

        Console(file=self.stream, no_color=os.environ.get("NO_COLOR") is not None, highlight=False,
                soft_wrap=True, markup=markup).print(text)
