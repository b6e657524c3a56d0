"""One writer per output folder: an OS file lock that dies with its process (kill -9 included)."""

from __future__ import annotations

import os
from pathlib import Path

from imgtag.config.errors import StoreInUseError
from imgtag.config.options import option


class StoreBusyError(StoreInUseError):
    """Another imgtag process holds the output folder."""


class FolderLock:
    def __init__(self, folder: Path) -> None:
        self.path = folder / "imgtag.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_nonblocking(fd)
        except OSError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StoreBusyError(
                f"another imgtag process (pid {holder}) is using {self.path.parent}; "
                f"wait for it to finish or use a different {option('out')}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None


def _lock_nonblocking(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
