"""How a message names a setting: by the Python API's parameter (`budget`, `images_per_request='...'`), unless the
command line is the client, which names its flag (`--budget`, `--images-per-request 5`).

A message is written once, for both clients: `option("budget")`, `option("mode", "batch")`. The CLI says it is
the client for the length of a command (`cli_naming`, cli/commands.py), so a notebook is never told about a flag
it has no way to pass. What is kept in the store (a file's reason, a preset's description) and the commands a
message tells a person to type (`imgtag cancel --out X`) are not settings of the call and keep their flags.

A module flag rather than a context variable: a run builds messages in threads of its own (ingest, the SDK
import) which a context variable would not reach. Kept free of imports: every stage may word a message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

# Parameters whose flag is not `--` + the name with dashes.
_FLAGS = {"formats": "--format", "fields": "--field", "force": "--all", "every": "--all"}
_NO_VALUE = object()


class _Number(float):
    def __repr__(self) -> str:
        return f"{self:g}"

    __str__ = __repr__

_cli = False


def option(name: str, value: object = _NO_VALUE) -> str:
    """The setting `name` (the API's parameter name), with `value` when given, as the current client spells it.
    A float is written with its digits only (`32`, not `32.0`)."""
    if isinstance(value, float):
        value = _Number(value)
    if _cli:
        flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
        return flag if value is _NO_VALUE else f"{flag} {value}"
    return name if value is _NO_VALUE else f"{name}={value!r}"


def for_cli() -> bool:
    """Whether the command line is the client (for an example that is spelt differently there)."""
    return _cli


@contextmanager
def cli_naming() -> Iterator[None]:
    """Messages made meanwhile name flags (the command line is the client)."""
    global _cli
    before, _cli = _cli, True
    try:
        yield
    finally:
        _cli = before
