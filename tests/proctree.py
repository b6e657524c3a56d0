"""Process-tree helpers for tests that kill imgtag: which processes descend from a pid (Linux /proc)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import pytest

needs_proc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="walks /proc (Linux only)")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid), or None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def descendants(pid: int) -> set[int]:
    """Every living process below pid (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[0] not in ("Z", "X"):
                children.setdefault(st[1], []).append(int(entry))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def wait_gone(pids: set[int], timeout: float) -> set[int]:
    """The pids still alive after `timeout` seconds (empty when all exited)."""
    deadline = time.monotonic() + timeout
    left = {p for p in pids if alive(p)}
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = {p for p in left if alive(p)}
    return left


def reap(pids: set[int]) -> None:
    """Test cleanup: never leave what a failed assertion found running."""
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, 9)


SESSION_ENV = "IMGTAG_TEST_SESSION"


def marked_orphans(marker: str, root: int) -> set[int]:
    """Processes started under this test session (their environment carries the marker) that are no longer
    below `root` (the pytest process): what a killed imgtag left behind."""
    return _living_with(f"{SESSION_ENV}={marker}", descendants(root) | {root})


def with_env(name: str, value: str) -> set[int]:
    """Living processes whose environment holds name=value (a marker a test gave the processes it started; their
    children inherit it)."""
    return _living_with(f"{name}={value}", {os.getpid()})


def _living_with(variable: str, excluded: set[int]) -> set[int]:
    """Living processes, other than `excluded`, whose environment holds `variable` ("name=value")."""
    needle = variable.encode()
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in excluded:
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0") and alive(int(entry)):
            found.add(int(entry))
    return found
