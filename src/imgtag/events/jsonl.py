"""`imgtag run --events FILE|-`: each event as one JSON line, flushed at once so a reader sees it live.

`-` is stdout, which then carries only these lines (everything for people goes to stderr). A FILE is checked
before anything else happens (`problem`), and created or truncated at the run's first event, so a configuration
error creates nothing. A write that fails raises, and the run's `Events` drops this writer (emitter.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Mapping
from typing import TextIO


class JsonLines:
    def __init__(self, target: str) -> None:
        self.target = target
        self._stream: TextIO | None = None
        self._own = target != "-"

    def __call__(self, event: Mapping[str, object]) -> None:
        if self._own and self._stream is None:
            self._stream = open(self.target, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
        stream = self._stream if self._own else sys.stdout
        assert stream is not None
        line = json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        try:
            stream.write(line + "\n")
            stream.flush()
        except BrokenPipeError:
            if not self._own:
                _silence_stdout()
            raise

    def close(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(OSError):
                self._stream.close()
            self._stream = None


def problem(target: str) -> str | None:
    """Why --events FILE cannot be written, in one sentence (None: it can, or it is stdout)."""
    if target == "-":
        return None
    path = os.path.abspath(target)
    if os.path.isdir(path):
        return f"--events {target}: is a folder; give a file name, or - for stdout"
    if os.path.exists(path):
        return None if os.access(path, os.W_OK) else f"--events {target}: the file is not writable"
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        return f"--events {target}: the folder {parent} does not exist"
    if not os.access(parent, os.W_OK):
        return f"--events {target}: cannot create a file in {parent}"
    return None


def _silence_stdout() -> None:
    """The reader of stdout is gone: point fd 1 at /dev/null so Python's flush at exit does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
