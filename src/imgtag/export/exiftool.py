"""A long-lived exiftool process (`-stay_open`), for writing metadata into images.

Why exiftool and not a Python binding: it is the reference implementation every photo tool is checked
against, it writes XMP into JPEG, PNG, TIFF and WebP and IPTC into JPEG and TIFF without touching the
pixels, and it is packaged by every distribution (Debian: libimage-exiftool-perl). pyexiv2, the kept
binding for exiv2, ships a bundled libexiv2 per platform and Python version, is GPL-3 (imgtag is MIT)
and runs inside our process, where a crash in C++ on a hostile file would take the run with it.

One process serves every image (starting Perl per image costs about 0.2 s). Arguments go through its
argument stream, one per line, as bytes: non-UTF-8 file names pass unchanged; values that may hold a
line break are passed as files (``-TAG<=FILE``).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Sequence
from typing import Any

from imgtag.config.options import option


def missing_exiftool() -> str:
    return (f"{option('formats', 'xmp-embed')} needs exiftool, which is not installed "
            "(Debian/Ubuntu: apt install libimage-exiftool-perl; macOS: brew install exiftool)")
_TIMEOUT = 120.0  # seconds for one command; a huge TIFF on a slow disk stays well inside


class ExiftoolError(RuntimeError):
    """exiftool failed or is unusable; the message is one line for the user."""


def find_exiftool() -> str | None:
    return os.environ.get("IMGTAG_EXIFTOOL") or shutil.which("exiftool")


class Exiftool:
    def __init__(self, executable: str | None = None) -> None:
        exe = executable or find_exiftool()
        if not exe:
            raise ExiftoolError("exiftool is not installed")
        common = ["-charset", "UTF8"]
        if os.name == "nt":  # there file names are UTF-16 and Perl needs telling how we encode them
            common += ["-charset", "filename=UTF8"]
        # Its own session: a Ctrl-C at the terminal (sent to the whole process group) would end exiftool in the
        # middle of a write, leaving its `_exiftool_tmp` file beside the image; we stop it ourselves (close()).
        # If imgtag is killed, exiftool reads the end of its stdin and exits.
        self._proc = subprocess.Popen(
            [exe, "-stay_open", "True", "-@", "-", "-common_args", *common],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=os.name != "nt")
        self._counter = 0
        self.busy = False  # a command sent and its answer not read: exiftool may be writing a file
        self._errors: queue.Queue[bytes] = queue.Queue()
        # stderr is drained by a thread: a full pipe would block exiftool and so us.
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._errors.put(line)

    def execute(self, args: Sequence[str | bytes]) -> tuple[bytes, str]:
        """Run one command; returns (stdout, stderr text)."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._counter += 1
        token = f"{{ready{self._counter}}}".encode()
        lines = []
        for arg in args:
            raw = os.fsencode(arg) if isinstance(arg, str) else arg
            if b"\n" in raw or b"\r" in raw:
                raise ExiftoolError("a line break in a file name or argument cannot be passed to exiftool")
            lines.append(raw)
        lines += [b"-echo4", token, b"-execute" + str(self._counter).encode()]
        self.busy = True
        try:
            self._proc.stdin.write(b"\n".join(lines) + b"\n")
            self._proc.stdin.flush()
        except OSError as exc:
            raise ExiftoolError(f"exiftool stopped unexpectedly ({exc.strerror})") from None
        out = bytearray()
        while not out.endswith(token + b"\n"):
            chunk = self._proc.stdout.readline()
            if not chunk:
                raise ExiftoolError("exiftool stopped unexpectedly")
            out += chunk
        err = bytearray()
        while True:
            try:
                line = self._errors.get(timeout=_TIMEOUT)
            except queue.Empty:
                raise ExiftoolError("exiftool did not answer in time") from None
            if line.rstrip(b"\r\n") == token:
                break
            err += line
        self.busy = False
        body = bytes(out[: -len(token) - 1])
        return body, err.decode("utf-8", "replace").strip()

    def read_json(self, path: str, tags: Sequence[str]) -> dict[str, Any]:
        body, err = self.execute(["-j", "-G1", "-struct", *tags, _safe(path)])
        try:
            data = json.loads(body.decode("utf-8") or "[{}]")
        except ValueError:
            raise ExiftoolError(f"exiftool could not read the file ({_first_line(err)})") from None
        return dict(data[0]) if data else {}

    def read_xmp_packet(self, path: str) -> bytes | None:
        body, _ = self.execute(["-b", "-XMP", _safe(path)])
        return body or None

    def close(self) -> None:
        """Ask exiftool to stop and wait: it finishes the command it is in (renaming its own temporary file)."""
        if self._proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self._proc.stdin is not None
                self._proc.stdin.write(b"-stay_open\nFalse\n")
                self._proc.stdin.flush()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._reader.join(timeout=5)

    def __enter__(self) -> Exiftool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _safe(path: str) -> str:
    # "--" cannot end the options in -stay_open mode (it would swallow -execute too); an absolute
    # path never starts with "-", so it is never taken for an option.
    return os.path.abspath(path)


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or ["no output"])[0]
