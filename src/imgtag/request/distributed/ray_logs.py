"""Ray's own log lines away from the operator's terminal, into a file.

Ray's C++ core in the driver process (gcs_client.cc, core_worker.cc, raylet_client.cc...) writes its warnings
straight to file descriptor 2, below Python, and Ray's Python loggers write to the `sys.stderr` they found at
import. Both land between imgtag's progress lines. `StderrRoute` points fd 2 at a file for as long as imgtag
uses Ray, and gives Python a `sys.stderr` on a duplicate of the terminal, so imgtag's own lines (progress,
messages) still reach the person. It first routes into a temporary file, because nothing may be created in
`--out` before the cluster has been reached; `keep_in` then moves what was written into the file the run keeps.
Ray's driver also prints the cluster's warnings (a raylet's "N PYTHON worker processes have been started", under
load) from a thread of its own to the `sys.stdout` of the moment: lines printed by Ray's threads go to the file
too (`_RayThreadsAside`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

LOG_NAME = "ray.log"
STDERR_FD = 2


class StderrRoute:
    """fd 2 -> a file, sys.stderr -> the terminal, until `restore`. Idempotent, safe to restore twice."""

    def __init__(self) -> None:
        self._saved_fd: int | None = None
        self._saved_stderr: Any = None
        self._terminal: IO[str] | None = None
        self._file: IO[bytes] | None = None
        self._saved_stdout: Any = None
        self.path: Path | None = None  # where the lines are kept (None while they go to a temporary file)

    def start(self) -> StderrRoute:
        if self._saved_fd is not None:
            return self
        sys.stderr.flush()
        self._saved_fd = os.dup(STDERR_FD)
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - open until keep_in or restore
        os.dup2(self._file.fileno(), STDERR_FD)
        self._saved_stderr = sys.stderr
        if _writes_to_fd2(sys.stderr):
            # Python's own stderr shares fd 2: give it the terminal back (a test runner's buffer needs nothing).
            self._terminal = os.fdopen(os.dup(self._saved_fd), "w", buffering=1,
                                       encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                                       errors="backslashreplace")
            sys.stderr = self._terminal
        self._saved_stdout = sys.stdout
        sys.stdout = _RayThreadsAside(sys.stdout)
        return self

    @property
    def started(self) -> bool:
        return self._saved_fd is not None

    def captured(self) -> str:
        """What Ray wrote so far (to tell why a connection failed)."""
        if self._file is None:
            return ""
        self._file.flush()
        self._file.seek(0)
        text = self._file.read().decode("utf-8", "replace")
        self._file.seek(0, os.SEEK_END)
        return text

    def keep_in(self, folder: Path) -> Path:
        """From now on the lines go to folder/ray.log (appended: a rerun adds to it), with what came before."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / LOG_NAME
        kept = path.open("ab")
        if self._file is not None:
            self._file.seek(0)
            kept.write(self._file.read())
            kept.flush()
            self._file.close()
        self._file = kept
        if self._saved_fd is not None:
            os.dup2(kept.fileno(), STDERR_FD)
        self.path = path
        return path

    def restore(self) -> None:
        if self._saved_fd is None:
            return
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(self._saved_fd, STDERR_FD)
        os.close(self._saved_fd)
        self._saved_fd = None
        if self._terminal is not None and sys.stderr is self._terminal:
            sys.stderr = self._saved_stderr
        if isinstance(sys.stdout, _RayThreadsAside):
            sys.stdout = self._saved_stdout
        if self._terminal is not None:
            with contextlib.suppress(Exception):
                self._terminal.close()
            self._terminal = None
        if self._file is not None:
            self._file.close()
            self._file = None


def _writes_to_fd2(stream: Any) -> bool:
    try:
        return bool(stream.fileno() == STDERR_FD)
    except (AttributeError, OSError, ValueError):
        return False


class _RayThreadsAside:
    """`sys.stdout` while the route is on: what a thread of Ray's (named `ray_...`, such as the driver's
    `ray_listen_error_messages`) prints goes to fd 2, the route's file; everything else to the stream it wraps."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        if threading.current_thread().name.startswith("ray_"):
            os.write(STDERR_FD, text.encode("utf-8", "replace"))
            return len(text)
        return int(self._inner.write(text))

    def flush(self) -> None:
        self._inner.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno...: the wrapped stream's
        return getattr(self._inner, name)
