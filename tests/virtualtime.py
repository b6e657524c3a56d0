"""An asyncio event loop on a virtual clock, for tests that are about time.

The clock stands still while anything is ready to run and jumps straight to the next timer when every task
waits. So `asyncio.sleep`, `wait_for` timeouts and anything reading `loop.time()` (pass it as a component's
`clock`) see exact, repeatable times however slow or loaded the machine is, and a simulated minute takes
milliseconds. Only in-process work may run on it: real I/O would happen in real time while the clock jumps.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
START = 1000.0  # not zero: code under test may treat 0.0 as "never"
TICK = 1e-6     # the least a wait for a timer moves the clock


class _JumpingSelector(selectors.DefaultSelector):
    """Polls without blocking; where the loop would block until its next timer, moves the clock to it."""

    loop: VirtualTimeLoop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        loop = self.loop
        # The loop's own bookkeeping (BaseEventLoop._ready, ._scheduled): a test helper may read it, and it
        # says what `timeout` cannot: whether 0 means "callbacks are ready" or "a timer is due within the
        # clock's resolution", which real time would reach by itself and virtual time must be moved to.
        if events or loop._ready:  # type: ignore[attr-defined]
            return events
        scheduled = loop._scheduled  # type: ignore[attr-defined]
        if not scheduled:
            raise RuntimeError("virtual time: every task waits and no timer is set (a deadlock)")
        # Like a real clock, time moves on by at least a tick while everything waits: code that sleeps for
        # a duration too small to register would otherwise wake to the same instant forever.
        loop.now = max(loop.now + TICK, scheduled[0].when())
        if loop.now - START > loop.limit_s:
            raise RuntimeError(f"virtual time: still running after {loop.limit_s:g} simulated seconds")
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, limit_s: float = 24 * 3600.0) -> None:
        selector = _JumpingSelector()
        super().__init__(selector)
        selector.loop = self
        self.now = START
        self.limit_s = limit_s  # a run that never ends fails instead of spinning through simulated days

    def time(self) -> float:
        return self.now


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run `main()` to completion on a fresh virtual-time loop (the loop's clock: `asyncio.get_running_loop().time`)."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(_call(main))


async def _call(main: Callable[[], Awaitable[Any]]) -> Any:
    return await main()
