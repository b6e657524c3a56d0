"""The last door before the wire: a stopping run sends nothing new, whatever a request was waiting for.

A graceful stop (request/engine.py `Engine.stop`) lets requests already sent finish, since they are paid for, and
sends no new one. Some requests wait inside a provider before they are sent: behind the cache warm-up's first
request (request/warmup.py), for a local server's adaptive limit (providers/adaptive.py). They are past the
engine's own waits, so only the provider knows the moment one is sent: `Provider.on_the_wire()` asks the gate of
the request's task here, and after a stop that request raises NotSent instead of going out.

The engine sets the gate in each request's task (a context variable, so it reaches through the provider
wrappers and into the tasks a request starts, without every provider passing it along).
"""

from __future__ import annotations

from contextvars import ContextVar


class NotSent(Exception):
    """The run is stopping: this request was about to be sent and was not (its images stay pending)."""


class SendGate:
    """Open until the run stops; closed, it turns every request that reaches the wire into NotSent."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


_GATE: ContextVar[SendGate | None] = ContextVar("imgtag_send_gate", default=None)


def use_gate(gate: SendGate) -> None:
    """The gate for requests made from the current task (and the tasks it starts from now on)."""
    _GATE.set(gate)


def check_gate() -> None:
    """Called just before a request is sent: NotSent when the run that makes it is stopping."""
    gate = _GATE.get()
    if gate is not None and gate.closed:
        raise NotSent("not sent: the run is stopping")
