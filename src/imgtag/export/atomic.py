"""Atomic file replacement: readers see the old file or the complete new one, never half of it.

SPEC: every output is rebuilt from the store, and a crash (or Ctrl-C, or a full disk) must never
leave a half-written results.csv. So we write a temp file in the *same directory* (os.replace is
only atomic within one filesystem), fsync it, rename it over the target, then fsync the
directory so the rename itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, TextIO, overload

_MAX_NAME_TRIES = 100


@overload
def atomic_write(
    path: str | os.PathLike[str],
    mode: Literal["w"] = "w",
    *,
    encoding: str = "utf-8",
    newline: str | None = None,
) -> contextlib.AbstractContextManager[TextIO]: ...


@overload
def atomic_write(
    path: str | os.PathLike[str],
    mode: Literal["wb"],
) -> contextlib.AbstractContextManager[BinaryIO]: ...


def atomic_write(
    path: str | os.PathLike[str],
    mode: str = "w",
    *,
    encoding: str | None = "utf-8",
    newline: str | None = None,
) -> contextlib.AbstractContextManager[IO[Any]]:
    """Open ``path`` for writing; the file appears (or is replaced) only if the block succeeds.

    ``mode`` is "w" (text; ``encoding`` and ``newline`` as for ``open``) or "wb" (binary).
    On any exception, including KeyboardInterrupt, the target is left untouched and the temp
    file is removed.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', not {mode!r}")
    return _atomic_write(Path(path), mode, encoding, newline)


@contextlib.contextmanager
def _atomic_write(path: Path, mode: str, encoding: str | None, newline: str | None) -> Iterator[IO[Any]]:
    fd, tmp = _create_temp(path)
    try:
        if mode == "wb":
            f: IO[Any] = os.fdopen(fd, "wb")
        else:
            f = os.fdopen(fd, "w", encoding=encoding, newline=newline)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _copy_mode(path, tmp)
        try:
            os.replace(tmp, path)
        except PermissionError as e:
            # On Windows a file open in Excel cannot be replaced; say so instead of a bare errno.
            raise PermissionError(
                e.errno, f"{e.strerror}; is {path.name} open in another program?", str(path)
            ) from e
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(
    path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8", newline: str | None = None
) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path, "w", encoding=encoding, newline=newline) as f:
        f.write(text)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def _create_temp(path: Path) -> tuple[int, Path]:
    # Not tempfile.mkstemp: it creates files 0600, and a results.csv readable only by its owner
    # would surprise users sharing an output folder. os.open with 0o666 lets the umask decide,
    # exactly as a plain open() would. The leading dot hides the temp file from casual listings.
    for _ in range(_MAX_NAME_TRIES):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        return fd, tmp
    raise FileExistsError(f"could not create a temporary file next to {path}")


def _copy_mode(target: Path, tmp: Path) -> None:
    # Replacing a file should not reset permissions a user set on it deliberately.
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        return
    os.chmod(tmp, mode)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename durable on POSIX. Windows cannot open directories this way, and some
    # filesystems refuse fsync on them; the data is already safe, so those errors are ignored.
    try:
        dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _unlink_quietly(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)
