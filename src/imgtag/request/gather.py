"""Sync mode with `--images-per-request K`: the engine's work items, K at a time (a pack is its unit of work).

A pack is full (K items) except the last of the run, and except when the input stalls: when nothing has come
for `stall_s` (a slow decode, a pipe on stdin that waits for its writer), the items already here go without
waiting for more. Waiting for a full pack costs a run nothing otherwise: when the input is slower than the
requests, the run ends with its last item either way, and every short pack re-sends the prompt prefix.

Backpressure stays with the consumer: the next item is asked for only while a pack is being gathered (and,
after a stall, while the short pack is handed on), so at most one pack's items are held ahead of the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")

# Longer than any gap between two decoded images of a folder (a large photo decodes in well under a second on
# one core), short enough that an image handed in by hand does not sit unsent.
STALL_S = 2.0


async def gather_packs(items: AsyncIterator[T], size: int, stall_s: float = STALL_S) -> AsyncIterator[list[T]]:
    """Lists of `size` items from `items`; a shorter one at the end, or after `stall_s` without a new item."""
    pending: asyncio.Future[T] | None = None
    pack: list[T] = []
    try:
        while True:
            if pending is None:
                # A task, not a bare await, so a stall can stop waiting without cancelling the source's step.
                pending = asyncio.ensure_future(anext(items))
            done, _ = await asyncio.wait({pending}, timeout=stall_s if pack else None)
            if not done:
                yield pack  # stalled: what is here goes now; the step in progress carries on meanwhile
                pack = []
                continue
            step, pending = pending, None
            try:
                item = step.result()
            except StopAsyncIteration:
                break
            pack.append(item)
            if len(pack) >= size:
                yield pack
                pack = []
        if pack:
            yield pack
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # abandoned: its outcome is moot
                await pending
