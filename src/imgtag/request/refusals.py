"""A server that says "no" to the first requests of a run stops the run, instead of failing image by image.

A gateway with an alias it does not have, or a key it cannot check (LiteLLM's proxy: 400 "No connected db."),
refuses every request the same way, with an error that looks permanent for one image. Recorded per image, a
folder of 5,000 images becomes 5,000 failures and 5,000 requests. So, until the first answer of the run, a
permanent refusal is held, not recorded: when `LIMIT` requests in a row have been refused with the same error,
the run stops (exit 2) with the server's sentence and every image stays pending; an answer, or a different error,
releases the held ones as the ordinary failures they then are. Errors that name the image itself (its format,
its size, a content filter) are never held: those are about the image, whatever the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from imgtag.providers.base import Fatal, Permanent
from imgtag.util.words import plural

T = TypeVar("T")  # what the engine holds for a refused request (its images and when it started)

LIMIT = 3
ABOUT_THE_IMAGE = frozenset({"invalid_image", "content_filter", "request_too_large", "no_vision"})

HOLD, FAIL, STOP = "hold", "fail", "stop"


def _same(a: Permanent, b: Permanent) -> bool:
    return (a.http_status, a.error_type, a.message) == (b.http_status, b.error_type, b.message)


@dataclass
class FirstRefusals(Generic[T]):
    """The run's first refusals, until an answer or a different error shows they are about their images."""

    open: bool = True                     # nothing answered yet, no mixed errors: refusals are held
    held: list[tuple[T, Permanent]] = field(default_factory=list)
    stopped: Permanent | None = None      # the refusal that stopped the run

    def answered(self) -> list[tuple[T, Permanent]]:
        """The server answered: the held refusals were about their images. Returns them, to record as failures."""
        return self._close()

    def refused(self, what: T, exc: Permanent) -> tuple[str, list[tuple[T, Permanent]]]:
        """What to do with this refusal, and with which refusals: (FAIL, the held ones released, to record as
        failures before this one), (HOLD, []), or (STOP, the refusals to leave pending: all held ones at the stop,
        later just this one)."""
        if self.stopped is not None:
            return (STOP, [(what, exc)]) if _same(exc, self.stopped) else (FAIL, [])
        if not self.open or exc.error_type in ABOUT_THE_IMAGE or (self.held and not _same(exc, self.held[0][1])):
            return FAIL, self._close()
        self.held.append((what, exc))
        if len(self.held) < LIMIT:
            return HOLD, []
        self.stopped = exc
        self.open = False
        return STOP, list(self.held)

    def stop_error(self) -> Fatal:
        """The run's stop, in one sentence quoting the server."""
        exc = self.stopped
        assert exc is not None
        return Fatal(f"the server refused the first {plural(LIMIT, 'request')} of the run the same way "
                     f"({exc.message}); nothing was marked failed and every image is still to do: fix the cause and "
                     "run the same command again", http_status=exc.http_status, request_id=exc.request_id,
                     error_type=exc.error_type)

    def release(self) -> list[tuple[T, Permanent]]:
        """At the end of a run too short to tell (fewer than LIMIT requests): the held refusals, as failures."""
        return self._close() if self.stopped is None else []

    def _close(self) -> list[tuple[T, Permanent]]:
        self.open = False
        released, self.held = self.held, []
        return released
