"""Waiting for a fake server to finish what it was asked, instead of sleeping for a guess.

After a client is killed, the requests it had in flight still run to their end on the server (and count as
answered). A fixed sleep guesses how long that takes; on a loaded machine the guess is wrong and the counts
a test compares are read too early. This waits for the server's own count of open requests to reach zero
and stay there a moment (a request the client wrote just before dying may not have been read yet).
"""

from __future__ import annotations

import time
from collections.abc import Callable

SETTLE_S = 0.2


def wait_idle(open_requests: Callable[[], int], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    idle_since: float | None = None
    while True:
        now = time.monotonic()
        if open_requests() > 0:
            idle_since = None
        elif idle_since is None:
            idle_since = now
        elif now - idle_since >= SETTLE_S:
            return
        if now > deadline:
            raise AssertionError(f"the fake server still had {open_requests()} requests open after {timeout:g} s")
        time.sleep(0.01)
