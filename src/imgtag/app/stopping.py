"""A graceful stop of a sync run: the first Ctrl-C (or SIGTERM, or `RunSession.stop` from Python) sends nothing
new and waits, for a bounded time, for the answers already asked for, since they are paid for either way.

Why these bounds: an answer usually takes seconds, and a person who pressed Ctrl-C waits 30 s at most (a second
Ctrl-C stops at once). A service manager sends SIGTERM and kills soon after (docker stop: 10 s; systemd's
default is 90 s), and imgtag still has to close its store and stop its helpers after the wait: 5 s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imgtag.request.engine import StopReport

GRACE_S = 30.0          # a Ctrl-C, or a stop asked from Python
GRACE_SIGTERM_S = 5.0   # SIGTERM: a service manager's SIGKILL follows


class RunStopped(Exception):
    """The run ended after a graceful stop, as an interrupted one (the answers that came meanwhile are stored)."""

    def __init__(self, report: StopReport) -> None:
        super().__init__("stopped")
        self.report = report
