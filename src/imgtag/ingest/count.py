"""Count the files a run will see, up front, so progress has a real total (and an ETA) from the start.

The same walk as discovery (same rules, so the same files), but nothing is opened or decoded: on a local
disk it runs far ahead of the decoders. It runs in a daemon thread and can be abandoned at any time.
Stdin (`-`) cannot be read twice, so a run reading paths from stdin has no total until discovery ends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence, Sized

from imgtag.ingest.discover import DiscoveryStats, discover
from imgtag.ingest.sidecars import SidecarRule


class FileCounter:
    def __init__(self, inputs: Sequence[str], *, exclude: Sequence[str] = (),
                 source: Iterable[object] | None = None, sidecars: SidecarRule | None = None) -> None:
        self._sidecars = sidecars
        self.total: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if source is not None:
            self.total = len(source) if isinstance(source, Sized) else None
        elif "-" not in inputs:
            self._thread = threading.Thread(target=self._walk, args=(list(inputs), list(exclude)),
                                            name="imgtag-count", daemon=True)

    def start(self) -> FileCounter:
        if self._thread is not None:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float) -> None:
        """Let a walk still under way finish, for at most `timeout` seconds (unless stopped)."""
        if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
            self._thread.join(timeout)

    def _walk(self, inputs: list[str], exclude: list[str]) -> None:
        n = 0
        try:
            for _ in discover(inputs, stats=DiscoveryStats(), exclude=exclude, sidecars=self._sidecars):
                if self._stop.is_set():
                    return
                n += 1
        except Exception:  # counting is a courtesy: discovery itself reports any real problem
            return
        self.total = n
